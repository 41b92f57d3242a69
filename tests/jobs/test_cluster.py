"""End to end through a real `qcluster` subprocess on the ORM broker, including a killed worker."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from django.db.models import Count

from jobs.enqueue import enqueue
from jobs.models import Job, JobStatus
from jobs.runner import tick
from tests.cluster import REDIS_URL, qcluster, redis_reachable, wait_until
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_real_cluster_runs_200_jobs_each_exactly_once(user):
    jobs = [enqueue("record", user=user, payload={"items": 1}) for _ in range(200)]
    with qcluster():
        wait_until(
            lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 200,
            timeout=120,
            what="200 jobs to succeed",
        )
    per_job = dict(
        Execution.objects.filter(phase="effect").values_list("job_id").annotate(n=Count("id"))
    )
    assert set(per_job) == {j.pk for j in jobs}
    assert set(per_job.values()) == {1}
    assert not Job.objects.exclude(status=JobStatus.SUCCEEDED).exists()


@pytest.mark.skipif(not redis_reachable(), reason="no Redis server reachable at REDIS_URL")
def test_a_cluster_on_the_redis_broker_runs_each_job_exactly_once(user, pipeline_config):
    # Jobs are written here without a hand-off; tick() in a process configured for Redis
    # offers them to the Redis broker, which the cluster (also on Redis) consumes.
    pipeline_config(handoff="none")
    jobs = [enqueue("record", user=user) for _ in range(50)]
    # tick() runs before the cluster starts: the cluster's hand-off pump would offer the jobs
    # itself otherwise, and this checks what tick offers.
    env = subprocess_env(REDIS_URL=REDIS_URL)
    offered = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", "from jobs.runner import tick; print(tick())"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "offered=50" in offered.stdout, offered.stdout + offered.stderr
    with qcluster(redis=True):
        wait_until(
            lambda: Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 50,
            timeout=60,
            what="50 jobs to succeed on the Redis broker",
        )
    per_job = Execution.objects.filter(phase="effect").values_list("job_id", flat=True)
    assert sorted(per_job) == sorted(j.pk for j in jobs)


def test_a_job_whose_worker_was_killed_is_recovered_and_finishes_once(user):
    # Short cap and grace so the lease (cap + grace = 5 s) expires quickly after the kill.
    job = enqueue("record", user=user, payload={"sleep_s": 2.5})
    with qcluster(job_wall_clock_cap_s=4, lease_grace_s=1):
        wait_until(
            lambda: Execution.objects.filter(job_id=job.pk, phase="started").exists(),
            timeout=60,
            what="the job to start",
        )
        victim = Execution.objects.get(job_id=job.pk, phase="started").worker_pid
        os.kill(victim, signal.SIGKILL)
        job.refresh_from_db()
        assert job.status == JobStatus.RUNNING  # the row still says so: nobody recorded a thing
        # The periodic tick is what returns a lost job; run it as the schedule would once the
        # lease has expired.
        wait_until(lambda: tick().leases_expired == 1, timeout=15, what="the lease to expire")
        wait_until(
            lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED,
            timeout=60,
            what="the recovered job to succeed",
        )
    job.refresh_from_db()
    assert job.attempts == 2
    assert "lease expired" in job.errors[0]["error"]
    assert Execution.objects.filter(job_id=job.pk, phase="started").count() == 2
    assert Execution.objects.filter(job_id=job.pk, phase="effect").count() == 1
    assert Execution.objects.get(job_id=job.pk, phase="effect").worker_pid != victim
