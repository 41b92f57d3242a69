"""calendar_sync: one capped, resumable Calendar sync run over an account's selected calendars."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import Job, Provider
from jobs.payloads import Payload
from jobs.sync.calendar import calendar_backfill_pending, calendar_sync
from jobs.sync.common import sync_job_run


@dataclass(frozen=True)
class CalendarSyncPayload(Payload):
    account_id: int
    full: bool = False
    # Only these of the selected calendars (a push notification's); empty: every one.
    calendar_ids: list[str] = field(default_factory=list)


@processor("calendar_sync", payload=CalendarSyncPayload, lane="calendar_sync:{account_id}")
def run(job: Job, ctx: JobContext) -> Metrics:
    payload: CalendarSyncPayload = ctx.payload  # type: ignore[assignment]
    # Once done, older events follow in a backfill chain of their own, at low priority.
    return sync_job_run(
        ctx,
        calendar_sync,
        account_id=payload.account_id,
        provider=Provider.CALENDAR,
        # `full` already reset the calendars' cursors; the continuation must not reset them again.
        again=CalendarSyncPayload(
            account_id=payload.account_id, calendar_ids=list(payload.calendar_ids)
        ),
        backfill=("calendar_backfill", calendar_backfill_pending),
        full=payload.full,
        calendar_ids=payload.calendar_ids,
    )
