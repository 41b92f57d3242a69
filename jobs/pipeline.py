"""The stage graph, in one place: which stages (by kind name) follow each stage for its batch.

A stage may fan out: normalization is followed by `extract_contacts` (and, later, `embed`);
`extract_contacts` by `write_timeline` and `update_rollups`. `jobs` never imports `contacts` or
`timeline`: stages are named, not imported, and a stage whose kind is not registered (its app
is not installed, or not built yet) is skipped, so the chain simply ends there.

A stage starts every following stage for its batch when it is done::

    for following in next_stages(job.kind):
        ctx.enqueue_next(following, dedupe_key=f"{following}:{ctx.user_id}:{ctx.batch_id}")
"""

from __future__ import annotations

from jobs.dispatcher import REGISTRY

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
