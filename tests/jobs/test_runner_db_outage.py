"""A job whose database connection the server cut (a restart, a failover) records its outcome
once the worker has reconnected, instead of staying `running` until its lease expires (the job
cap + grace: 12 minutes by default) with nobody to say what happened."""

from __future__ import annotations

import pytest
from django.db import connection

from jobs.enqueue import enqueue
from jobs.models import Job, JobStatus
from jobs.runner import run_job

# Not in a test transaction: the connection is really cut and opened again.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_connection():
    yield
    connection.close()  # whatever happened, the next test starts on a working connection


def test_a_run_whose_connection_was_cut_records_its_retry_after_reconnecting(user, pipeline_config):
    pipeline_config(handoff="none")
    job = enqueue("lose_connection", user=user)
    assert run_job(job.pk) == JobStatus.RETRYING
    job.refresh_from_db()
    assert job.status == JobStatus.RETRYING
    assert job.attempts == 1 and job.locked_by == "" and job.lease_expires_at is None
    assert "terminating connection" in job.last_error
    assert len(job.errors) == 1


def test_the_next_attempt_runs_normally(user, pipeline_config):
    pipeline_config(handoff="none")
    job = enqueue("lose_connection", user=user, payload={"times": 1})
    assert run_job(job.pk) == JobStatus.RETRYING
    Job.objects.filter(pk=job.pk).update(run_after=Job.objects.get(pk=job.pk).started_at)
    assert run_job(job.pk) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.attempts == 2 and job.status == JobStatus.SUCCEEDED
