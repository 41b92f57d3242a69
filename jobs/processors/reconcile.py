"""reconcile: compare an account's Gmail and Calendar with what is stored; fetch what is missing.

Enqueued per account by the RECONCILE schedule (jobs.sync.reconcile.reconcile_schedule) and by
`manage.py reconcile`, in the lane reconcile:{account_id} at priority 5. Each provider gets a
ReconcileRun row (jobs.sync.reconcile); with `fix`, what was fetched is normalized by the usual
stage for this batch. A run stopped by its deadline continues with the providers it had left, as
does one that yielded its worker on quota (due once the quota frees).
Metrics: itemsFetched = missing items fetched, itemsInserted = rows inserted, details per
provider (run id, status, listed, stored, missing, fetched, extra).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import GoogleAccount, GoogleAccountStatus, Job, Provider, ReconcileStatus
from jobs.payloads import Payload
from jobs.sync.reconcile import ReconcileOutcome, reconcile_normalize, reconcile_provider


@dataclass(frozen=True)
class ReconcilePayload(Payload):
    account_id: int
    fix: bool = True
    providers: list[str] = field(default_factory=lambda: [Provider.GMAIL, Provider.CALENDAR])


@processor("reconcile", payload=ReconcilePayload, lane="reconcile:{account_id}")
def run(job: Job, ctx: JobContext) -> Metrics:
    payload: ReconcilePayload = ctx.payload  # type: ignore[assignment]
    account = GoogleAccount.objects.filter(pk=payload.account_id, user_id=ctx.user_id).first()
    if account is None or account.status != GoogleAccountStatus.ACTIVE:
        # Disconnected meanwhile or needing re-authorisation: nothing to compare.
        return Metrics(details={"skipped": "account not active"})
    outcome = ReconcileOutcome()
    ctx.track(outcome.metrics)
    for i, provider in enumerate(payload.providers):
        found = reconcile_provider(
            account=account,
            provider=provider,
            fix=payload.fix,
            batch_id=ctx.batch_id,
            control=ctx,
            job=job,
            outcome=outcome,
        )
        if found.fetched_count:
            reconcile_normalize(
                ctx.enqueue_next, account=account, provider=provider, batch_id=ctx.batch_id
            )
        # Only a run that got somewhere continues (stopped by the deadline or the per-run cap
        # after storing something): never a chain that fetches the same items again and again.
        # A run that yielded its worker on quota (jobs.sync.reconcile.QuotaYield: before its
        # first call, or in a fix after storing) continues once the quota frees.
        progressed = outcome.sync.timed_out or outcome.sync.counts.inserted > 0
        deferred = outcome.sync.deferred_s
        if found.status == ReconcileStatus.PARTIAL and (progressed or deferred):
            ctx.continue_with(
                ReconcilePayload(
                    account_id=account.pk, fix=payload.fix, providers=payload.providers[i:]
                ),
                delay_s=deferred,
            )
            break
    return outcome.metrics()
