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
from jobs.sync.common import sync_job_run


@dataclass(frozen=True)
class CalendarBackfillPayload(Payload):
    account_id: int


@processor(
    "calendar_backfill", payload=CalendarBackfillPayload, lane="calendar_backfill:{account_id}"
)
def run(job: Job, ctx: JobContext) -> Metrics:
    payload: CalendarBackfillPayload = ctx.payload  # type: ignore[assignment]
    return sync_job_run(
        ctx,
        calendar_backfill,
        account_id=payload.account_id,
        provider=Provider.CALENDAR,
        again=payload,
    )
