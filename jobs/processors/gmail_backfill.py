"""gmail_backfill: the account's older mail, newest first, back to backfill_horizon_days.

Started (priority 5, below every incremental sync) when an account's first Gmail window pass is
done, in a lane of its own (gmail_backfill:{account_id}) so incremental syncs never wait behind
it; continues until done, then starts normalization for its batch. Metrics details: listed,
mode "backfill", horizon, oldestReached, backfillDone.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import Job, Provider
from jobs.payloads import Payload
from jobs.sync.common import sync_job_run
from jobs.sync.gmail import gmail_backfill


@dataclass(frozen=True)
class GmailBackfillPayload(Payload):
    account_id: int


@processor("gmail_backfill", payload=GmailBackfillPayload, lane="gmail_backfill:{account_id}")
def run(job: Job, ctx: JobContext) -> Metrics:
    payload: GmailBackfillPayload = ctx.payload  # type: ignore[assignment]
    return sync_job_run(
        ctx, gmail_backfill, account_id=payload.account_id, provider=Provider.GMAIL, again=payload
    )
