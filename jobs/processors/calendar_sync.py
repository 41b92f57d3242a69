"""calendar_sync: one capped, resumable Calendar sync run over an account's selected calendars."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import Job, Provider
from jobs.payloads import Payload
from jobs.sync.calendar import calendar_backfill_pending, calendar_sync
from jobs.sync.common import SyncResult, sync_account, sync_follow_up, sync_start_backfill


@dataclass(frozen=True)
class CalendarSyncPayload(Payload):
    account_id: int
    full: bool = False


@processor("calendar_sync", payload=CalendarSyncPayload, lane="calendar_sync:{account_id}")
def run(job: Job, ctx: JobContext) -> Metrics:
    payload: CalendarSyncPayload = ctx.payload  # type: ignore[assignment]
    # Tracked from the start: a run that fails after storing still reports what it stored.
    result = SyncResult()
    ctx.track(result.metrics)
    account = sync_account(account_id=payload.account_id, user_id=ctx.user_id)
    calendar_sync(
        account=account, batch_id=ctx.batch_id, full=payload.full, control=ctx, result=result
    )
    # `full` already reset the calendars' cursors; the continuation must not reset them again.
    again = CalendarSyncPayload(account_id=account.pk)
    sync_follow_up(ctx, result=result, account=account, provider=Provider.CALENDAR, again=again)
    if not result.more and calendar_backfill_pending(account):
        # The window is in: older events follow in a chain of their own, at low priority.
        sync_start_backfill(account=account, kind="calendar_backfill")
    return result.metrics()
