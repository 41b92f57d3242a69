"""Item 3 (sync part): a late worker, whose job tick() took back and handed on, writes nothing.
Item 9 (sync part): a sync run that fails reports the work it did before failing."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from google_emulator.server import GoogleEmulator
from jobs import runner
from jobs.config import get_config
from jobs.context import JobContext
from jobs.dispatcher import get_processor
from jobs.enqueue import enqueue
from jobs.errors import LeaseLost, TransientError
from jobs.models import GoogleAccount, Job, JobStatus, RawEvent, SyncState
from jobs.runner import claim, return_expired_leases
from jobs.sync.calendar import calendar_sync
from jobs.sync.gmail import gmail_sync

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def sync_config(wide_sync_config):
    wide_sync_config(gmail_chunk_size=50)


class WorkerLease:
    """The run control of the worker that claimed `job`: fence() holds the job row (FOR SHARE)
    while this worker still holds the lease, else raises LeaseLost (as JobContext.fence does).
    `on_checkpoint` runs at the n-th checkpoint, to let tick() take the job mid-run."""

    def __init__(self, job: Job, *, take_over_at: int | None = None) -> None:
        self.job = job
        self.take_over_at = take_over_at
        self.checkpoints = 0

    def deadline_reached(self) -> bool:
        return False

    def checkpoint(self) -> None:
        self.checkpoints += 1
        if self.checkpoints == self.take_over_at:
            take_over(self.job)

    def fence(self) -> None:
        assert connection.in_atomic_block
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {Job._meta.db_table} WHERE id = %s AND status = %s"
                " AND locked_by = %s AND attempts = %s FOR SHARE",
                [self.job.pk, JobStatus.RUNNING, self.job.locked_by, self.job.attempts],
            )
            if cursor.fetchone() is None:
                raise LeaseLost(f"job {self.job.pk} lost its lease")


def claimed(kind: str, account: GoogleAccount, worker: str) -> Job:
    job = enqueue(kind, user=account.user_id, payload={"account_id": account.pk})
    held = claim(job.pk, worker, config=get_config())
    assert held is not None
    return held


def take_over(job: Job) -> Job:
    """The lease runs out, tick() returns the job, another worker claims it."""
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert return_expired_leases() == 1
    newer = claim(job.pk, "worker-b", config=get_config())
    assert newer is not None and newer.attempts == job.attempts + 1
    return newer


@pytest.mark.parametrize(
    ("kind", "run"), [("gmail_sync", gmail_sync), ("calendar_sync", calendar_sync)]
)
def test_item3_a_late_worker_whose_job_was_handed_on_changes_nothing(google_account, kind, run):
    late = claimed(kind, google_account, "worker-a")
    take_over(late)

    with pytest.raises(LeaseLost):
        run(account=google_account, batch_id=late.batch_id, control=WorkerLease(late))

    assert not RawEvent.objects.exists()
    assert not SyncState.objects.exists()


def test_item3_a_worker_that_loses_its_lease_mid_run_stores_nothing_after_that(
    google_account, pipeline_config
):
    # A first run leaves a cursor; the late worker of the second (a full relist) must not move it.
    first = claimed("gmail_sync", google_account, "worker-a")
    gmail_sync(account=google_account, batch_id=first.batch_id, control=WorkerLease(first))
    Job.objects.filter(pk=first.pk).update(status=JobStatus.SUCCEEDED, locked_by="")
    stored = RawEvent.objects.count()
    # The newest 120 rows go (listing is newest first): the relist must fetch them again.
    RawEvent.objects.filter(pk__in=RawEvent.objects.order_by("pk")[:120].values("pk")).delete()
    cursor, kept = SyncState.objects.get().cursor, RawEvent.objects.count()

    late = claimed("gmail_sync", google_account, "worker-a")
    # Checkpoints: one per listing page, then one per chunk; the lease goes after chunk 1.
    control = WorkerLease(late, take_over_at=3)
    with pytest.raises(LeaseLost):
        gmail_sync(account=google_account, batch_id=late.batch_id, full=True, control=control)

    assert control.checkpoints == 3
    # Chunk 1 (50 messages) was stored under the lease; nothing after the lease was lost.
    assert RawEvent.objects.count() == kept + 50 < stored
    state = SyncState.objects.get()
    assert state.cursor == cursor and len(state.pending_ids) == stored - 50


# -- item 9: a failed run reports what it did ----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fault_route"),
    [("gmail_sync", "gmail.users.messages.get"), ("calendar_sync", "calendar.events.list")],
)
def test_item9_a_run_that_fails_after_storing_reports_what_it_stored(
    google_account, emulator: GoogleEmulator, pipeline_config, kind, fault_route
):
    pipeline_config(google_retry_after_cap_s=0.0, google_request_retries=0)
    # Storing goes well for a while, then Google answers 503 for good, asking for a wait (a
    # Gmail run that stored chunks and got no Retry-After ends and continues its chain instead).
    emulator.faults.add(fault_route, 503, after=120 if kind == "gmail_sync" else 1, retry_after=5)
    job = claimed(kind, google_account, "worker-a")
    spec = get_processor(kind)
    ctx = JobContext(
        job=job,
        payload=spec.parse_payload(job.payload),
        deadline=time.monotonic() + 60,
        logger=logging.getLogger("test"),
    )

    with pytest.raises(TransientError):
        spec.func(job, ctx)

    assert ctx._progress is not None
    metrics = ctx._progress()
    stored = RawEvent.objects.filter(account=google_account).count()
    assert stored > 0
    assert metrics.items_inserted == stored and metrics.items_fetched >= stored


# -- with the engine's own JobContext.fence() and runner (once the engine work has landed) -------


@pytest.mark.parametrize(
    ("kind", "run"), [("gmail_sync", gmail_sync), ("calendar_sync", calendar_sync)]
)
def test_item3_a_late_worker_with_the_engines_job_context_changes_nothing(
    google_account, kind, run
):
    late = claimed(kind, google_account, "worker-a")
    take_over(late)
    ctx = JobContext(
        job=late,
        payload=get_processor(kind).parse_payload(late.payload),
        deadline=time.monotonic() + 60,
        logger=logging.getLogger("test"),
    )

    with pytest.raises(LeaseLost):
        run(account=google_account, batch_id=late.batch_id, control=ctx)

    assert not RawEvent.objects.exists() and not SyncState.objects.exists()


def test_item9_a_failed_attempt_records_the_raw_events_it_stored(
    google_account, emulator: GoogleEmulator, pipeline_config
):
    pipeline_config(google_retry_after_cap_s=0.0, google_request_retries=0, job_max_attempts=1)
    # Google asks for a wait: the run hands back to the engine, failing its only attempt.
    emulator.faults.add("gmail.users.messages.get", 503, after=120, retry_after=5)
    job = enqueue(
        "gmail_sync", user=google_account.user_id, payload={"account_id": google_account.pk}
    )

    runner.run_job(job.pk)

    job.refresh_from_db()
    stored = RawEvent.objects.filter(account=google_account).count()
    assert job.status == JobStatus.FAILED and stored == 100
    assert job.metrics["itemsInserted"] == stored and job.metrics["itemsFetched"] >= stored
