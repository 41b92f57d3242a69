"""generate_insights: the user's insights after their rollups, phase by phase, chunk by chunk.

Started by `update_rollups` through jobs.pipeline.start_next_stages, in its batch and with its
``source`` (the provider whose interactions of the batch the "batch" scope reads; "" for all).
Which contacts the per-contact rules look at (payload ``contacts``): "auto" decides from the
job that started it: after the nightly all-contacts rollups (contacts.rollups.rollups_nightly)
or with no parent, every live contact ("all"); after a batch's rollups, the contacts the batch
touched ("batch"). The user-level rules (awaiting reply, meeting prep, digest), the expiry and
the LLM run every time. Writes are fenced; past the deadline the run stops between chunks and
continues in a new job from (`phase`, `after_id`). Metrics: itemsFetched = subjects evaluated
(contacts, threads, meetings, the digest), itemsInserted = insights inserted, itemsSkipped =
unchanged, details {"itemsUpdated", "refreshed", "resolved", "expired", "chunks", "byKind",
"llmCalls", "llmPhrased", "llmFallbacks"}. The last stage of its branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from contacts.rollups import touched_contact_ids
from contacts.selectors import batch_interaction_ids
from insights.services import PHASES, InsightsReport, insights_generate
from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.errors import PayloadError
from jobs.models import Job
from jobs.payloads import Payload

CONTACT_SCOPES = ("auto", "all", "batch")


@dataclass(frozen=True)
class GenerateInsightsPayload(Payload):
    # "auto" | "all" | "batch" (see the module docstring)
    contacts: str = "auto"
    # "batch" scope: the provider whose interactions of the batch to take ("" for all)
    source: str = ""
    # a continuation's starting point: the phase, and the last id done in it
    phase: str = PHASES[0]
    after_id: int = 0


def _metrics(report: InsightsReport, *, timed_out: bool = False) -> Metrics:
    return Metrics(
        items_fetched=report.evaluated,
        items_inserted=report.inserted,
        items_skipped=report.unchanged,
        timed_out=timed_out,
        details=report.details(),
    )


def _scope(job: Job, requested: str) -> str:
    """ "all" or "batch" for "auto": the nightly all-contacts rollups (or no parent) -> all."""
    if requested != "auto":
        return requested
    parent = (
        Job.objects.filter(pk=job.parent_id, user_id=job.user_id).values("kind", "payload").first()
        if job.parent_id
        else None
    )
    if parent is None:
        return "all"
    if parent["kind"] == "update_rollups" and (parent["payload"] or {}).get("all_contacts"):
        return "all"
    return "batch"


@processor("generate_insights", payload=GenerateInsightsPayload)
def run(job: Job, ctx: JobContext) -> Metrics:
    payload = cast(GenerateInsightsPayload, ctx.payload)
    if payload.contacts not in CONTACT_SCOPES:
        raise PayloadError(f"contacts must be one of {', '.join(CONTACT_SCOPES)}")
    if payload.phase not in PHASES:
        raise PayloadError(f"phase must be one of {', '.join(PHASES)}")
    report = InsightsReport()
    ctx.track(lambda: _metrics(report))
    scope = _scope(job, payload.contacts)
    contact_ids = None
    if scope == "batch":
        interactions = batch_interaction_ids(
            user_id=ctx.user_id, batch_id=ctx.batch_id, source=payload.source
        )
        contact_ids = touched_contact_ids(user_id=ctx.user_id, interaction_ids=interactions)
    resume = insights_generate(
        user_id=ctx.user_id,
        contact_ids=contact_ids,
        phase=payload.phase,
        after_id=payload.after_id,
        fence=ctx.fence,
        deadline=ctx.deadline,
        checkpoint=ctx.checkpoint,
        report=report,
    )
    if resume is not None:
        ctx.continue_with(
            GenerateInsightsPayload(
                contacts=scope,
                source=payload.source,
                phase=resume.phase,
                after_id=resume.after_id,
            )
        )
        return _metrics(report, timed_out=True)
    return _metrics(report)
