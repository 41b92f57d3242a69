"""Job services: the writes behind the admin actions and management commands."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.db.models.functions import Now

from jobs.broker import offer
from jobs.enqueue import enqueue
from jobs.models import Job, JobStatus
from jobs.models.job import ACTIVE_STATUSES, FINISHED_STATUSES


def job_retry(*, job_ids: Iterable[int]) -> int:
    """Failed or cancelled jobs go back to `queued`, due now, with their attempts reset.

    Their error history stays. A job whose lane is held by an active job is left as it is, and
    of several selected jobs in one free lane only the newest is retried (a lane holds one).
    Returns how many were retried.
    """
    candidates = Job.objects.filter(
        pk__in=list(job_ids), status__in=[JobStatus.FAILED, JobStatus.CANCELLED]
    )
    lane_busy = Job.objects.filter(dedupe_key=OuterRef("dedupe_key"), status__in=ACTIVE_STATUSES)
    newest_in_lane = candidates.filter(dedupe_key=OuterRef("dedupe_key")).order_by("-id")
    now = Now()  # the database's clock, as claim() reads it
    with transaction.atomic():
        retried = list(
            candidates.exclude(Exists(lane_busy))
            .filter(Q(dedupe_key__isnull=True) | Q(pk=Subquery(newest_in_lane.values("pk")[:1])))
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
        )
        Job.objects.filter(pk__in=retried).update(
            status=JobStatus.QUEUED,
            attempts=0,
            run_after=now,
            finished_at=None,
            cancel_requested=False,
            offered_at=now,
            updated_at=now,
        )
        transaction.on_commit(lambda: offer(retried))
    return len(retried)


def job_requeue(*, job_ids: Iterable[int]) -> list[Job]:
    """Run finished jobs again as new jobs (same kind, user, payload, batch; parent = original).

    The original rows keep their history. Where the lane is busy the active job is returned.
    """
    created = []
    with transaction.atomic():
        for job in Job.objects.filter(pk__in=list(job_ids), status__in=FINISHED_STATUSES):
            created.append(
                enqueue(
                    job.kind,
                    user=job.user_id,
                    payload=job.payload,
                    batch_id=job.batch_id,
                    dedupe_key=job.dedupe_key,
                    parent=job,
                )
            )
    return created


def job_cancel(*, job_ids: Iterable[int]) -> tuple[int, int]:
    """Cancel queued/retrying jobs now; ask running ones to stop at their next checkpoint.

    Returns (cancelled now, asked to stop).
    """
    ids = list(job_ids)
    now = Now()
    with transaction.atomic():
        cancelled = Job.objects.filter(
            pk__in=ids, status__in=[JobStatus.QUEUED, JobStatus.RETRYING]
        ).update(status=JobStatus.CANCELLED, finished_at=now, cancel_requested=True, updated_at=now)
        asked = Job.objects.filter(
            Q(pk__in=ids), status=JobStatus.RUNNING, cancel_requested=False
        ).update(cancel_requested=True, updated_at=now)
    return cancelled, asked
