"""push_renew: make, renew or stop an account's Gmail watch and calendar notification channels."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.google.pacer import QuotaDeferred, deferring
from jobs.models import GoogleAccount, GoogleAccountStatus, Job
from jobs.payloads import Payload
from jobs.sync.push import RenewResult, push_reconcile


@dataclass(frozen=True)
class PushRenewPayload(Payload):
    account_id: int


@processor("push_renew", payload=PushRenewPayload, lane="push_renew:{account_id}")
def run(job: Job, ctx: JobContext) -> Metrics:
    payload: PushRenewPayload = ctx.payload  # type: ignore[assignment]
    account = GoogleAccount.objects.filter(pk=payload.account_id, user_id=ctx.user_id).first()
    if account is None or account.status != GoogleAccountStatus.ACTIVE:
        # Disconnected meanwhile (its subscriptions were stopped then) or needing re-auth.
        return Metrics(details={"skipped": "account not active"})
    # Tracked from the start: an attempt that fails after renewing still reports it.
    result = RenewResult()
    ctx.track(result.metrics)
    try:
        # A quota wait longer than quota_yield_after_s while another job waits for a worker
        # stops before that call; what is renewed stays renewed (each outcome is saved as it
        # comes), and the continuation, due once the quota frees, does only what is still due.
        with deferring(ctx.others_waiting):
            push_reconcile(account=account, control=ctx, result=result)
    except QuotaDeferred as exc:
        ctx.continue_with(payload, delay_s=exc.retry_after or 0.0)
        metrics = result.metrics()
        metrics.details["quotaDeferredS"] = round(exc.retry_after or 0.0, 2)
        return metrics
    return result.metrics()
