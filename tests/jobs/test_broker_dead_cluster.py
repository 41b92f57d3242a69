"""A message a cluster took off the ORM queue and never ran (the cluster was killed) does not
hold its job for django-q2's `retry` (the job cap + 120 s): tick offers the job again once
`reoffer_after_s` has passed, as it does on Redis, where a taken message leaves the list."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F

from jobs.broker import held_job_ids, offer
from jobs.config import get_config
from jobs.models import Job, JobStatus
from jobs.runner import tick

pytestmark = pytest.mark.django_db


def offered_long_ago(job: Job) -> None:
    """As if the job had been offered (and due) longer than reoffer_after_s ago."""
    Job.objects.filter(pk=job.pk).update(
        run_after=F("run_after") - timedelta(seconds=get_config().reoffer_after_s + 1),
        offered_at=F("offered_at") - timedelta(seconds=get_config().reoffer_after_s + 1),
    )


def test_a_job_whose_message_a_dead_cluster_took_is_offered_again(user):
    from django_q.brokers import get_broker
    from django_q.models import OrmQ

    job = Job.objects.create(user=user, kind="noop")
    assert offer([job.pk]) == 1
    Job.objects.filter(pk=job.pk).update(offered_at=F("run_after"))
    # What a cluster's pusher does: take the message (locked for Q_CLUSTER["retry"] seconds)
    # and put it in the cluster's memory; the cluster is then killed before a worker claims it.
    taken = get_broker().dequeue()
    assert [int(message_id) for message_id, _ in taken] == list(
        OrmQ.objects.values_list("id", flat=True)
    )
    assert held_job_ids() == set()  # taken: no longer waiting on the queue
    offered_long_ago(job)
    assert tick().offered == 1
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert OrmQ.objects.count() == 2  # the dead cluster's (redelivered after `retry`) and this


def test_a_message_still_waiting_on_the_orm_queue_holds_its_job(user):
    job = Job.objects.create(user=user, kind="noop")
    assert offer([job.pk]) == 1
    Job.objects.filter(pk=job.pk).update(offered_at=F("run_after"))
    assert held_job_ids() == {job.pk}
    offered_long_ago(job)
    assert tick().offered == 0
