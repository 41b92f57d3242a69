"""gmail_sync: one capped, resumable Gmail sync run for an account; continues until done."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import Job, Provider
from jobs.payloads import Payload
from jobs.sync.common import sync_job_run
from jobs.sync.gmail import gmail_backfill_pending, gmail_sync


@dataclass(frozen=True)
class GmailSyncPayload(Payload):
    account_id: int
    full: bool = False


@processor("gmail_sync", payload=GmailSyncPayload, lane="gmail_sync:{account_id}")
def run(job: Job, ctx: JobContext) -> Metrics:
    payload: GmailSyncPayload = ctx.payload  # type: ignore[assignment]
    # Once done, older mail follows in a backfill chain of its own, at low priority.
    return sync_job_run(
        ctx,
        gmail_sync,
        account_id=payload.account_id,
        provider=Provider.GMAIL,
        again=payload,
        backfill=("gmail_backfill", gmail_backfill_pending),
        full=payload.full,
    )
