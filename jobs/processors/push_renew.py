"""push_renew: make, renew or stop an account's Gmail watch and calendar notification channels."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
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
    push_reconcile(account=account, control=ctx, result=result)
    return result.metrics()
