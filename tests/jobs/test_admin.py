"""The job admin through the Django test client: actions change state, non-staff are refused."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.enqueue import enqueue
from jobs.models import Job, JobStatus
from jobs.runner import run_job

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:jobs_job_changelist"


def act(client, action: str, jobs: list[Job]):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [j.pk for j in jobs]},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_retry_puts_failed_jobs_back_in_the_queue_with_attempts_reset(staff_client, user):
    job = enqueue("record", user=user, payload={"fail_permanent": True})
    run_job(job.pk)
    response = act(staff_client, "retry_jobs", [job])
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.attempts == 0
    assert job.run_after <= timezone.now()
    assert len(job.errors) == 1  # history kept
    assert "1 job(s) queued for retry." in messages_of(response)


def test_retry_leaves_a_succeeded_job_alone_and_says_so(staff_client, user):
    job = enqueue("record", user=user)
    run_job(job.pk)
    response = act(staff_client, "retry_jobs", [job])
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert any("skipped" in m for m in messages_of(response))


def test_requeue_runs_a_finished_job_again_as_a_new_job(staff_client, user):
    job = enqueue("record", user=user, payload={"items": 2})
    run_job(job.pk)
    response = act(staff_client, "requeue_jobs", [job])
    again = Job.objects.exclude(pk=job.pk).get()
    assert again.parent_id == job.pk and again.payload == job.payload
    assert again.status == JobStatus.QUEUED
    assert "1 job(s) requeued as new jobs." in messages_of(response)


def test_cancel_stops_queued_jobs_and_flags_running_ones(staff_client, user):
    queued = enqueue("record", user=user)
    running = enqueue("record", user=user)
    Job.objects.filter(pk=running.pk).update(status=JobStatus.RUNNING)
    response = act(staff_client, "cancel_jobs", [queued, running])
    queued.refresh_from_db()
    running.refresh_from_db()
    assert queued.status == JobStatus.CANCELLED
    assert running.status == JobStatus.RUNNING and running.cancel_requested
    assert "1 job(s) cancelled; 1 running job(s) asked to stop." in messages_of(response)


def test_a_non_staff_user_is_refused(client, user):
    job = enqueue("record", user=user, payload={"fail_permanent": True})
    run_job(job.pk)
    client.force_login(user)
    response = client.post(
        reverse(CHANGELIST), {"action": "retry_jobs", "_selected_action": [job.pk]}
    )
    assert response.status_code == 302 and "/login/" in response["Location"]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_staff_without_change_permission_cannot_run_actions(client, django_user_model, user):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(viewer)
    job = enqueue("record", user=user, payload={"fail_permanent": True})
    run_job(job.pk)
    response = client.post(
        reverse(CHANGELIST), {"action": "retry_jobs", "_selected_action": [job.pk]}
    )
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert response.status_code in (200, 302)


def test_the_detail_page_shows_every_attempts_error_read_only(staff_client, user):
    job = enqueue("record", user=user, payload={"fail_transient_times": 5}, max_attempts=2)
    for _ in range(2):
        Job.objects.filter(pk=job.pk).update(run_after=timezone.now())
        run_job(job.pk)
    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "attempt 1 at" in page and "attempt 2 at" in page
    assert 'name="status"' not in page  # read-only: no form field


def test_the_changelist_costs_the_same_queries_for_5_or_50_jobs(
    staff_client, user, django_assert_max_num_queries
):
    def page_queries(n: int) -> None:
        for _ in range(n):
            enqueue("record", user=user)
        with django_assert_max_num_queries(12):
            response = staff_client.get(reverse(CHANGELIST) + "?status__exact=queued")
        assert response.status_code == 200

    page_queries(5)
    page_queries(45)


def test_search_finds_jobs_by_batch_id_and_username(staff_client, user, other_user):
    mine = enqueue("record", user=user)
    enqueue("record", user=other_user)
    by_batch = staff_client.get(reverse(CHANGELIST), {"q": str(mine.batch_id)})
    assert list(by_batch.context["cl"].result_list) == [mine]
    by_user = staff_client.get(reverse(CHANGELIST), {"q": "ada"})
    assert list(by_user.context["cl"].result_list) == [mine]


def test_retry_takes_one_job_per_free_lane_and_none_from_a_busy_one(staff_client, user):
    def failed_in(lane: str) -> Job:
        job = enqueue("record", user=user, payload={"fail_permanent": True}, dedupe_key=lane)
        run_job(job.pk)
        return job

    older, newer = failed_in("lane:a"), failed_in("lane:a")
    blocked = failed_in("lane:b")
    enqueue("record", user=user, dedupe_key="lane:b")  # an active job holds lane b
    free = enqueue("record", user=user, payload={"fail_permanent": True})
    run_job(free.pk)
    response = act(staff_client, "retry_jobs", [older, newer, blocked, free])
    statuses = {
        j.pk: j.status for j in Job.objects.filter(pk__in=[older.pk, newer.pk, blocked.pk, free.pk])
    }
    assert statuses == {
        older.pk: JobStatus.FAILED,
        newer.pk: JobStatus.QUEUED,
        blocked.pk: JobStatus.FAILED,
        free.pk: JobStatus.QUEUED,
    }
    assert "2 job(s) queued for retry." in messages_of(response)
