"""calendar_backfill: each selected calendar's events older than the window, to the horizon.

Started (priority 5, below every incremental sync) when an account's calendars have synced
their window, in a lane of its own (calendar_backfill:{account_id}); continues until done, then
starts normalization for its batch. Metrics details: mode "backfill", horizon, backfillDone.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import Job, Provider
from jobs.payloads import Payload
from jobs.sync.calendar import calendar_backfill
from jobs.sync.common import SyncResult, sync_account, sync_follow_up


@dataclass(frozen=True)
class CalendarBackfillPayload(Payload):
    account_id: int


@processor(
    "calendar_backfill", payload=CalendarBackfillPayload, lane="calendar_backfill:{account_id}"
)
def run(job: Job, ctx: JobContext) -> Metrics:
    payload: CalendarBackfillPayload = ctx.payload  # type: ignore[assignment]
    result = SyncResult()
    ctx.track(result.metrics)
    account = sync_account(account_id=payload.account_id, user_id=ctx.user_id)
    calendar_backfill(account=account, batch_id=ctx.batch_id, control=ctx, result=result)
    sync_follow_up(ctx, result=result, account=account, provider=Provider.CALENDAR, again=payload)
    return result.metrics()
