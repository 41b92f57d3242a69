"""normalize_gmail: a batch's pending Gmail raw events to interactions, chunk by chunk.

Enqueued by the sync stage through jobs.pipeline.next_stage, in the sync job's batch:
``ctx.enqueue_next("normalize_gmail", {"account_id": account.pk},
dedupe_key=f"normalize_gmail:{user_id}:{batch_id}")``. ``account_id`` (optional) names the
account whose addresses decide direction for raw events that lack one (default: all the user's
accounts); ``only_batch=False`` takes every pending raw event of the user instead of the batch's,
and moves each into this job's batch as it records its outcome (so the stages that follow for
the batch see them).
Metrics: itemsFetched = raw events processed, itemsInserted, itemsSkipped = unchanged,
details {"itemsUpdated", "failed"}. Past the deadline it stops between chunks and continues in
a new job of the same batch; when done it starts the next stages for the batch's interactions
of its provider (``{"source": provider}``, jobs.pipeline.start_next_stages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import Job, Provider
from jobs.normalization.services import NormalizationReport, raw_events_normalize
from jobs.payloads import Payload
from jobs.pipeline import start_next_stages


@dataclass(frozen=True)
class NormalizePayload(Payload):
    account_id: int | None = None
    only_batch: bool = True


def normalize_stage(job: Job, ctx: JobContext, *, provider: str) -> Metrics:
    """The body of both normalize processors (they differ only in the provider)."""
    payload = cast(NormalizePayload, ctx.payload)
    done = NormalizationReport()  # every committed chunk, read by the runner on any outcome
    ctx.track(lambda: _metrics(done))

    def should_stop() -> bool:
        if ctx.deadline_reached():
            return True
        ctx.checkpoint()  # an operator's cancel stops the job between chunks
        return False

    report = raw_events_normalize(
        user_id=ctx.user_id,
        provider=provider,
        batch_id=ctx.batch_id if payload.only_batch else None,
        # rows taken from other batches (only_batch=False: the pending sweep) join this one,
        # so the stages started below for this batch find them
        into_batch=ctx.batch_id,
        account_id=payload.account_id,
        should_stop=should_stop,
        on_chunk=done.add,
        fence=ctx.fence,
    )
    if report.stopped:
        ctx.continue_with(payload)
    else:
        # The stage graph fans out here (extract_contacts, embed): each for this batch's
        # interactions of this provider, in lanes of their own (jobs.pipeline.stage_key).
        start_next_stages(ctx, {"source": provider})
    return _metrics(report)


def _metrics(report: NormalizationReport) -> Metrics:
    return Metrics(
        items_fetched=report.fetched,
        items_inserted=report.inserted,
        items_skipped=report.unchanged,
        timed_out=report.stopped,
        details={"itemsUpdated": report.updated, "failed": report.failed},
    )


@processor("normalize_gmail", payload=NormalizePayload)
def run(job: Job, ctx: JobContext) -> Metrics:
    return normalize_stage(job, ctx, provider=Provider.GMAIL)
