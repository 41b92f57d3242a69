"""Issue 8 item 8 through a real `qcluster` subprocess: a retry is delivered within a couple of
seconds of its run_after, on the ORM broker and on Redis, without waiting for the minute tick."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager

import pytest

from jobs.enqueue import enqueue
from jobs.models import Job, JobStatus
from tests.cluster import qcluster, redis_reachable, wait_until
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def engine_cluster(*, redis: bool) -> AbstractContextManager[object]:
    # A cluster name of its own, so that no other cluster sharing the Redis server (or the
    # database) takes these messages.
    return qcluster(redis=redis, name=f"engine-test-{uuid.uuid4().hex[:8]}", log_level=None)


def lateness(job: Job) -> float:
    """Seconds between the retry's run_after and the second attempt's claim (both written with
    the database's clock)."""
    job.refresh_from_db()
    return (job.started_at - job.run_after).total_seconds()


@pytest.mark.parametrize(
    "redis",
    [
        False,
        pytest.param(
            True,
            marks=pytest.mark.skipif(not redis_reachable(), reason="no Redis server reachable"),
        ),
    ],
    ids=["orm", "redis"],
)
def test_item8_a_retry_is_delivered_within_two_seconds_of_its_run_after(
    user, pipeline_config, redis
):
    # Nothing is handed off from this process (its broker is the ORM one): the cluster's pump
    # offers the jobs, on the cluster's own broker.
    pipeline_config(handoff="none")
    # Retry-After 3 s: longer than the jitter of attempt 1 (<= 2 s in tests.settings).
    jobs = [
        enqueue("record", user=user, payload={"fail_transient_times": 1, "retry_after": 3})
        for _ in range(4)
    ]
    with engine_cluster(redis=redis):
        wait_until(
            lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).count() == len(jobs),
            timeout=30,  # the minute tick would need ~60 s
            what="every retry to succeed",
        )
    late = [lateness(job) for job in jobs]
    print(f"retry lateness (s): {[round(x, 2) for x in late]}")
    assert all(job.attempts == 2 for job in Job.objects.all())
    assert max(late) < 2.5, late
    assert Execution.objects.filter(phase="effect").count() == len(jobs)


def test_item8_a_job_enqueued_for_later_runs_on_time(user, pipeline_config):
    pipeline_config(handoff="none")
    from django.db.models.functions import Now

    job = enqueue("record", user=user)
    Job.objects.filter(pk=job.pk).update(run_after=Now() + _seconds(4))
    with engine_cluster(redis=False):
        wait_until(
            lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED,
            timeout=30,
            what="the job to run",
        )
    late = lateness(job)
    print(f"lateness (s): {late:.2f}")
    assert 0 <= late < 2.5


def _seconds(n: float):
    from datetime import timedelta

    return timedelta(seconds=n)
