"""The order of the pipeline's stages, in one place: each stage enqueues the next by kind name.

`jobs` never imports `contacts` or `timeline`; a stage whose kind is not registered (its app is
not installed, or not built yet) simply ends the chain.
"""

from __future__ import annotations

from jobs.dispatcher import REGISTRY

NEXT_STAGE: dict[str, str] = {
    "gmail_sync": "normalize_gmail",
    "calendar_sync": "normalize_calendar",
    "gmail_backfill": "normalize_gmail",
    "calendar_backfill": "normalize_calendar",
    "normalize_gmail": "extract_contacts",
    "normalize_calendar": "extract_contacts",
    "extract_contacts": "write_timeline",
}


def next_stage(kind: str) -> str | None:
    """The registered kind that follows `kind`, or None where the chain ends."""
    following = NEXT_STAGE.get(kind)
    return following if following in REGISTRY else None
