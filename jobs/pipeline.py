"""The stage graph, in one place: which stages (by kind name) follow each stage for its batch.

A stage may fan out: normalization is followed by `extract_contacts` (and, later, `embed`);
`extract_contacts` by `write_timeline` and `update_rollups`. `jobs` never imports `contacts` or
`timeline`: stages are named, not imported, and a stage whose kind is not registered (its app
is not installed, or not built yet) is skipped, so the chain simply ends there.

A stage starts every following stage for its batch when it is done, passing on what it
covered (``source``: the provider whose interactions it handled, "" for all)::

    start_next_stages(ctx, {"source": payload.source})

Each job started so has a lane of its own: the kind, the user, the batch and the id of the job
that started it (`stage_key`). One batch can finish the same stage twice: its Gmail and its
Calendar normalization both start extract_contacts, and a reconcile chain normalizes once per
run. Under one lane per batch the second request was folded into the first job when that job
was already running, with the batch's interactions read, and the second half of the batch was
never extracted (nor its timeline written). Now the second request is a job of its own, which
reads the batch when it starts. Two jobs of one kind for one user stay safe together: each
stage writes per interaction (extract_contacts serializes its chunks per user).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from jobs.dispatcher import REGISTRY

if TYPE_CHECKING:
    from jobs.context import JobContext

# stage -> the stages that follow it, in the order they are started
STAGES: dict[str, tuple[str, ...]] = {
    "gmail_sync": ("normalize_gmail",),
    "calendar_sync": ("normalize_calendar",),
    "gmail_backfill": ("normalize_gmail",),
    "calendar_backfill": ("normalize_calendar",),
    "normalize_gmail": ("extract_contacts", "embed"),
    "normalize_calendar": ("extract_contacts", "embed"),
    "extract_contacts": ("write_timeline", "update_rollups"),
    "update_rollups": ("generate_insights",),
}


def next_stages(kind: str) -> list[str]:
    """The registered kinds that follow `kind`, in order; [] where the chain ends."""
    return [following for following in STAGES.get(kind, ()) if following in REGISTRY]


def next_stage(kind: str) -> str | None:
    """The first registered kind that follows `kind`, or None where the chain ends.

    For callers that start one stage (the sync starts its normalization); a stage that may fan
    out calls `next_stages` instead.
    """
    following = next_stages(kind)
    return following[0] if following else None


def stage_key(kind: str, ctx: JobContext) -> str:
    """The lane of the `kind` job that the running job `ctx` starts for its batch: its own."""
    return f"{kind}:{ctx.user_id}:{ctx.batch_id}:{ctx.job.pk}"


def start_next_stages(ctx: JobContext, payload: dict[str, Any] | None = None) -> list[str]:
    """Start every registered stage that follows the running job's kind, for its batch, once
    this run succeeds (each in its own lane: `stage_key`); the kinds started.

    Each gets the fields of `payload` its kind declares (a stage a project registers in place
    of ours, without `source`, gets none and reads the whole batch)."""
    started = next_stages(ctx.job.kind)
    for following in started:
        declared = {f.name for f in dataclasses.fields(REGISTRY[following].payload)}
        data = {key: value for key, value in (payload or {}).items() if key in declared}
        ctx.enqueue_next(following, data, dedupe_key=stage_key(following, ctx))
    return started
