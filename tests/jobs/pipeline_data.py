"""A small pipeline in every state, for the status selector, the pipeline page and the browser:
failures of two patterns, waiting, due and running jobs, stale pending and failed raw events,
two Google accounts (one needing re-authorisation) with sync states and quota spent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from jobs.enqueue import enqueue
from jobs.google import pacer
from jobs.models import (
    GoogleAccount,
    GoogleAccountStatus,
    Job,
    JobStatus,
    NormalizationStatus,
    RawEvent,
    SyncState,
)
from jobs.runner import run_job


@dataclass
class Pipeline:
    upstream_failures: list[Job]  # "PermanentError: upstream answered <n> for item <n>"
    permanent_failures: list[Job]  # "PermanentError: asked to fail permanently"
    queued: list[Job]
    later: Job  # queued, not due for an hour
    running: Job
    active: GoogleAccount
    reauth: GoogleAccount


def failed_flaky(user, *, items: range, until_s: float = 3600.0) -> list[Job]:
    """Jobs that failed with "upstream answered 503 for item <i>" (one pattern, many numbers);
    once `until_s` has passed, a retry succeeds."""
    until = (timezone.now() + timedelta(seconds=until_s)).isoformat()
    jobs = []
    for item in items:
        job = enqueue("flaky", user=user, payload={"fail_until": until, "item": item})
        run_job(job.pk)
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED
        jobs.append(job)
    return jobs


def build(user, other_user) -> Pipeline:
    upstream = failed_flaky(user, items=range(3)) + failed_flaky(other_user, items=range(7, 8))
    permanent = []
    for _ in range(2):
        job = enqueue("record", user=user, payload={"fail_permanent": True})
        run_job(job.pk)
        permanent.append(job)
    for _ in range(3):
        run_job(enqueue("record", user=user).pk)  # succeeded
    queued = [enqueue("record", user=other_user) for _ in range(2)]
    Job.objects.filter(pk=queued[0].pk).update(run_after=timezone.now() - timedelta(minutes=20))
    later = enqueue("record", user=user, run_after=timezone.now() + timedelta(hours=1))
    running = enqueue("noop", user=user)
    Job.objects.filter(pk=running.pk).update(
        status=JobStatus.RUNNING,
        attempts=1,
        locked_by="worker-host:4242",
        started_at=timezone.now() - timedelta(seconds=90),
        lease_expires_at=timezone.now() + timedelta(seconds=630),
    )
    active = GoogleAccount.objects.create(
        user=user, email="ada@pipeline.example", addresses=["ada@pipeline.example"]
    )
    reauth = GoogleAccount.objects.create(
        user=other_user,
        email="bob@pipeline.example",
        status=GoogleAccountStatus.NEEDS_REAUTH,
        last_error="invalid_grant",
    )
    SyncState.objects.create(
        user=user,
        account=active,
        provider="gmail",
        cursor="12345",
        pending_ids=["a1", "a2", "a3"],
        pass_cursor="12400",
        pass_listed=10,
        pass_fetched=7,
        failures={"m1": {"error": "HTTP 500"}},
        last_synced_at=timezone.now() - timedelta(minutes=5),
    )
    SyncState.objects.create(
        user=user,
        account=active,
        provider="calendar",
        resource_id="ada@pipeline.example",
        cursor="sync-token",
        last_synced_at=timezone.now() - timedelta(minutes=50),
    )
    for i, status in enumerate(
        [NormalizationStatus.PENDING] * 3 + [NormalizationStatus.FAILED] * 2
    ):
        RawEvent.objects.create(
            user=user,
            account=active,
            provider="gmail",
            source_id=f"raw-{i}",
            payload={"id": f"raw-{i}"},
            status=status,
            error="KeyError: 'payload'" if status == NormalizationStatus.FAILED else "",
        )
    # two of the pending ones waited long (updated_at is auto_now: set it afterwards)
    RawEvent.objects.filter(source_id__in=["raw-0", "raw-1"]).update(
        updated_at=timezone.now() - timedelta(hours=2)
    )
    pacer.take(active.email, 25, api="gmail")
    pacer.take(active.email, 3, api="calendar")
    return Pipeline(
        upstream_failures=upstream,
        permanent_failures=permanent,
        queued=queued,
        later=later,
        running=running,
        active=active,
        reauth=reauth,
    )
