"""A Gmail sync out of quota hands its worker back when other jobs wait for one.

With more accounts than workers, a sync that sleeps in the pacer until its account's quota frees
holds a worker that another account (with quota to spend) is waiting for. Measured on the load
test (tests/chaos/test_load_fairness.py): 20 accounts on 4 workers, each worker mostly asleep.
So when the wait exceeds quota_yield_after_s and another job is due, the run stops before the
batch (its place saved) and continues in a new job due when the quota frees; alone, it sleeps.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.enqueue import enqueue
from jobs.models import GoogleAccount, Job, JobStatus, RawEvent
from jobs.runner import run_due_jobs
from tests.fixtures.sync import eligible, sync

pytestmark = pytest.mark.django_db

WINDOW_S = 8.0


@pytest.fixture(autouse=True)
def paced(pipeline_config):
    # 1,000 Gmail units per user per 8 s window: the profile, the send-as list and one list
    # page (7 units), then three batches of 50 messages.get (750); the fourth batch must wait
    # for the window to free (~8 s).
    pipeline_config(
        handoff="none",
        initial_window_days=3650,
        gmail_chunk_pause_s=0.0,
        gmail_quota_units_per_user_per_minute=1000,
        quota_window_s=WINDOW_S,
        quota_burst_window_s=0.0,
        google_retry_after_cap_s=30.0,
        quota_yield_after_s=1.0,
    )


def stored(account: GoogleAccount) -> int:
    return RawEvent.objects.filter(user_id=account.user_id, provider="gmail").count()


def test_a_sync_out_of_quota_yields_its_worker_to_a_waiting_job(google_account, other_user):
    waiting = enqueue("selfcheck", user=other_user)  # due, waiting for a worker

    started = time.monotonic()
    job = sync(google_account)
    took = time.monotonic() - started

    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    assert took < WINDOW_S / 2, f"the run slept {took:.1f}s in the pacer instead of yielding"
    assert stored(google_account) == 150
    assert job.metrics["details"]["continues"] is True
    assert 1.0 < job.metrics["details"]["quotaDeferredS"] <= WINDOW_S
    follow = Job.objects.get(parent=job)
    assert follow.kind == "gmail_sync" and follow.status == JobStatus.QUEUED
    # due when the quota frees, not at once (it would only wait in the pacer again)
    assert follow.run_after > timezone.now() + timedelta(seconds=1)
    assert Job.objects.get(pk=waiting.pk).status == JobStatus.QUEUED


def test_the_continuation_finishes_the_pass_once_due(google_account, generated_mailbox, other_user):
    enqueue("selfcheck", user=other_user)
    sync(google_account)
    run_due_jobs(kinds=["selfcheck"])

    deadline = time.monotonic() + 3 * WINDOW_S
    while stored(google_account) < eligible(generated_mailbox) and time.monotonic() < deadline:
        run_due_jobs(kinds=["gmail_sync"], until_empty=True)
        time.sleep(0.2)

    assert stored(google_account) == eligible(generated_mailbox)
    chain = Job.objects.filter(user_id=google_account.user_id, kind="gmail_sync")
    assert set(chain.values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    assert set(chain.values_list("attempts", flat=True)) == {1}


def test_alone_a_sync_sleeps_through_the_wait_as_before(google_account, generated_mailbox):
    started = time.monotonic()
    job = sync(google_account)
    took = time.monotonic() - started

    assert job.status == JobStatus.SUCCEEDED
    assert stored(google_account) == eligible(generated_mailbox)
    assert "quotaDeferredS" not in job.metrics["details"]
    assert took > WINDOW_S / 2
    assert not Job.objects.filter(parent=job, kind="gmail_sync").exists()
