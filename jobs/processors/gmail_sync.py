"""gmail_sync: one capped, resumable Gmail sync run for an account; continues until done."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import Job, Provider
from jobs.payloads import Payload
from jobs.sync.common import SyncResult, sync_account, sync_follow_up, sync_start_backfill
from jobs.sync.gmail import gmail_backfill_pending, gmail_sync


@dataclass(frozen=True)
class GmailSyncPayload(Payload):
    account_id: int
    full: bool = False


@processor("gmail_sync", payload=GmailSyncPayload, lane="gmail_sync:{account_id}")
def run(job: Job, ctx: JobContext) -> Metrics:
    payload: GmailSyncPayload = ctx.payload  # type: ignore[assignment]
    # Tracked from the start: a run that fails after storing still reports what it stored.
    result = SyncResult()
    ctx.track(result.metrics)
    account = sync_account(account_id=payload.account_id, user_id=ctx.user_id)
    gmail_sync(
        account=account, batch_id=ctx.batch_id, full=payload.full, control=ctx, result=result
    )
    sync_follow_up(ctx, result=result, account=account, provider=Provider.GMAIL, again=payload)
    if not result.more and gmail_backfill_pending(account):
        # The recent window is in: older mail follows in a chain of its own, at low priority.
        sync_start_backfill(account=account, kind="gmail_backfill")
    return result.metrics()
