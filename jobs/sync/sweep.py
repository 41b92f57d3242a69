"""The pending sweep: raw events no job will normalize get a normalization job of their own.

A sync chain enqueues normalization for its batch only when it ends well. A chain that fails,
is cancelled or stops at a re-auth, or a normalize job that fails, leaves its raw events
`pending` with nothing to pick them up. The django-q2 Schedule PENDING_SWEEP (jobs.schedules)
calls `sweep_pending_raw_events` every `pending_sweep_interval_minutes`: for each user and
provider with raw events pending for longer than `pending_sweep_after_s` and no active job that
covers them (no active normalize job of that provider for the user, no active sync or
backfill of that provider still writing: `covering_kinds`, read from the stage graph), it
enqueues `normalize_gmail` / `normalize_calendar` with `{"only_batch": false}` (every pending
row of the user), under the dedupe key `<kind>:sweep:<user_id>` so sweeps never pile up. That
job moves the rows it normalizes into its own batch, so the people stages it starts for its
batch (extract_contacts, write_timeline, update_rollups) see them.

Ages are measured with the database's clock (`updated_at` is written by it on every change).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, QuerySet
from django.db.models.functions import Now

from jobs.config import get_config
from jobs.enqueue import enqueue
from jobs.models import Job, PendingRawEvent, Provider
from jobs.models.job import ACTIVE_STATUSES
from jobs.pipeline import STAGES
from jobs.sync.enqueue import SYNC_KINDS

logger = logging.getLogger(__name__)


def normalize_kind(provider: str) -> str:
    """The normalization kind that follows the provider's sync (normalize_gmail, ...)."""
    return STAGES[SYNC_KINDS[provider]][0]


def raw_events_stale_pending(
    *,
    user_id: int | None = None,
    provider: str | None = None,
    older_than_s: float | None = None,
) -> QuerySet[PendingRawEvent]:
    """Raw events still on the work list (pending) more than `older_than_s` (default:
    pending_sweep_after_s) after their last write, of one user and/or provider when given."""
    if older_than_s is None:
        older_than_s = get_config().pending_sweep_after_s
    rows = PendingRawEvent.objects.filter(
        raw_event__updated_at__lt=Now() - timedelta(seconds=older_than_s)
    )
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    if provider is not None:
        rows = rows.filter(provider=provider)
    return rows


def raw_events_stale_pending_count(
    *, user_id: int | None = None, provider: str | None = None, older_than_s: float | None = None
) -> int:
    """How many raw events have waited for normalization longer than they should (the
    dashboard's and pipeline_status's figure)."""
    return raw_events_stale_pending(
        user_id=user_id, provider=provider, older_than_s=older_than_s
    ).count()


def covering_kinds(provider: str) -> list[str]:
    """The kinds whose active job covers the provider's pending raw events: its normalization
    and every stage that writes its raw events, i.e. is followed by that normalization in the
    stage graph (the sync, the backfill)."""
    normalize = normalize_kind(provider)
    writers = [kind for kind, following in STAGES.items() if normalize in following]
    return [*writers, normalize]


def _uncovered(provider: str, *, older_than_s: float) -> dict[int, int]:
    """user id -> stale pending count, for users no active job of the provider covers."""
    covering = Job.objects.filter(
        user_id=OuterRef("user_id"),
        kind__in=covering_kinds(provider),
        status__in=ACTIVE_STATUSES,
    )
    rows = (
        raw_events_stale_pending(provider=provider, older_than_s=older_than_s)
        .filter(~Exists(covering))
        .values("user_id")
        .annotate(pending=Count("pk"))
        .order_by("user_id")
    )
    return {row["user_id"]: row["pending"] for row in rows}


def sweep_pending_raw_events() -> int:
    """Enqueue normalization for stale pending raw events nothing covers; how many jobs started."""
    older_than_s = get_config().pending_sweep_after_s
    started = 0
    for provider in Provider.values:
        kind = normalize_kind(provider)
        for user_id, pending in _uncovered(provider, older_than_s=older_than_s).items():
            job = enqueue(
                kind,
                user=user_id,
                payload={"only_batch": False},
                dedupe_key=f"{kind}:sweep:{user_id}",
            )
            if not getattr(job, "deduplicated", False):
                started += 1
                logger.info(
                    "pending sweep: %s job %s for user %s (%d stale pending raw events)",
                    kind,
                    job.pk,
                    user_id,
                    pending,
                )
    return started
