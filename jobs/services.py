"""Job services: the writes behind the admin actions and management commands."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from jobs.broker import offer
from jobs.enqueue import enqueue
from jobs.models import Job, JobStatus
from jobs.models.job import FINISHED_STATUSES


def job_retry(*, job_ids: Iterable[int]) -> int:
    """Failed or cancelled jobs go back to `queued`, due now, with their attempts reset.

    Their error history stays. A job whose lane is taken by an active job is left as it is.
    Returns how many were retried.
    """
    retried = []
    with transaction.atomic():
        for job in Job.objects.select_for_update(skip_locked=True).filter(
            pk__in=list(job_ids), status__in=[JobStatus.FAILED, JobStatus.CANCELLED]
        ):
            if (
                job.dedupe_key
                and Job.objects.filter(
                    dedupe_key=job.dedupe_key,
                    status__in=[JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING],
                ).exists()
            ):
                continue
            now = timezone.now()
            Job.objects.filter(pk=job.pk).update(
                status=JobStatus.QUEUED,
                attempts=0,
                run_after=now,
                finished_at=None,
                cancel_requested=False,
                offered_at=now,
                updated_at=now,
            )
            retried.append(job.pk)
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
    now = timezone.now()
    with transaction.atomic():
        cancelled = Job.objects.filter(
            pk__in=ids, status__in=[JobStatus.QUEUED, JobStatus.RETRYING]
        ).update(status=JobStatus.CANCELLED, finished_at=now, cancel_requested=True, updated_at=now)
        asked = Job.objects.filter(
            Q(pk__in=ids), status=JobStatus.RUNNING, cancel_requested=False
        ).update(cancel_requested=True, updated_at=now)
    return cancelled, asked
