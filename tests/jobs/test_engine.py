"""The job engine against real Postgres: hand-off on commit, claims, outcomes, deadlines, lanes."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import OrmQ

from jobs.enqueue import enqueue
from jobs.errors import PayloadError, UnknownKindError
from jobs.models import Job, JobStatus
from jobs.runner import run_due_jobs, run_job, tick
from jobs.services import job_cancel
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db


def effects(job: Job) -> int:
    return Execution.objects.filter(job_id=job.pk, phase="effect").count()


class TestEnqueue:
    def test_it_hands_off_to_the_broker_only_after_commit(
        self, user, django_capture_on_commit_callbacks
    ):
        before = OrmQ.objects.count()
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            job = enqueue("noop", user=user)
            assert OrmQ.objects.count() == before
        assert len(callbacks) == 1
        assert OrmQ.objects.count() == before + 1
        assert job.status == JobStatus.QUEUED

    def test_a_rolled_back_job_is_never_delivered_or_run(self, user):
        before = OrmQ.objects.count()
        with pytest.raises(RuntimeError), transaction.atomic():
            enqueue("record", user=user)
            raise RuntimeError("roll back")
        assert not Job.objects.exists()
        assert OrmQ.objects.count() == before
        assert run_due_jobs(until_empty=True).ran == 0

    def test_it_refuses_a_bad_payload_with_a_clear_error(self, user):
        with pytest.raises(PayloadError, match="'sleep_s' must be float"):
            enqueue("record", user=user, payload={"sleep_s": "soon"})
        with pytest.raises(PayloadError, match="unknown payload field"):
            enqueue("record", user=user, payload={"colour": "red"})
        assert not Job.objects.exists()

    def test_it_refuses_an_unknown_kind(self, user):
        with pytest.raises(UnknownKindError, match="unknown job kind 'nope'"):
            enqueue("nope", user=user)

    def test_a_lane_holds_one_active_job_per_user(self, user, other_user):
        first = enqueue("laned", user=user)
        second = enqueue("laned", user=user)
        theirs = enqueue("laned", user=other_user)
        assert second.pk == first.pk and second.deduplicated
        assert theirs.pk != first.pk
        run_job(first.pk)
        assert enqueue("laned", user=user).pk != first.pk


class TestRun:
    def test_success_records_metrics_and_one_effect(self, user):
        job = enqueue("record", user=user, payload={"items": 7})
        assert run_job(job.pk) == "succeeded"
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
        assert job.metrics["itemsInserted"] == 7
        assert job.attempts == 1 and job.finished_at is not None
        assert effects(job) == 1

    def test_a_second_delivery_of_a_finished_job_does_nothing(self, user):
        job = enqueue("record", user=user)
        run_job(job.pk)
        assert run_job(job.pk) == "not-claimed"
        assert effects(job) == 1

    def test_a_transient_failure_retries_inside_the_backoff_window(self, user):
        job = enqueue("record", user=user, payload={"fail_transient_times": 1})
        before = timezone.now()
        assert run_job(job.pk) == "retrying"
        job.refresh_from_db()
        # attempt 1: full jitter over [0, base * 2**0] = [0, 2 s] (tests.settings)
        assert before <= job.run_after <= timezone.now() + timedelta(seconds=2)
        assert job.errors[0]["attempt"] == 1 and "asked to fail" in job.errors[0]["error"]
        Job.objects.filter(pk=job.pk).update(run_after=timezone.now())
        assert run_job(job.pk) == "succeeded"
        assert effects(job) == 1

    def test_retry_after_is_honoured(self, user):
        job = enqueue("record", user=user, payload={"fail_transient_times": 1, "retry_after": 30})
        run_job(job.pk)
        job.refresh_from_db()
        assert job.run_after >= timezone.now() + timedelta(seconds=29)
        assert run_job(job.pk) == "not-claimed"  # not due yet

    def test_the_last_attempt_fails_the_job(self, user):
        job = enqueue("record", user=user, payload={"fail_transient_times": 99}, max_attempts=3)
        for _ in range(3):
            Job.objects.filter(pk=job.pk).update(run_after=timezone.now())
            run_job(job.pk)
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED
        assert job.attempts == 3 and len(job.errors) == 3
        assert "attempts exhausted" in job.last_error

    def test_a_permanent_failure_fails_at_once(self, user):
        job = enqueue("record", user=user, payload={"fail_permanent": True})
        assert run_job(job.pk) == "failed"
        job.refresh_from_db()
        assert job.attempts == 1 and "asked to fail permanently" in job.last_error

    def test_an_unknown_kind_at_run_time_fails_at_once(self, user):
        job = Job.objects.create(user=user, kind="retired_kind", run_after=timezone.now())
        assert run_job(job.pk) == "failed"
        job.refresh_from_db()
        assert "unknown job kind 'retired_kind'" in job.last_error

    def test_a_payload_that_went_bad_fails_at_run_time(self, user):
        job = enqueue("record", user=user)
        Job.objects.filter(pk=job.pk).update(payload={"sleep_s": "x"})
        assert run_job(job.pk) == "failed"
        job.refresh_from_db()
        assert "PayloadError" in job.last_error

    def test_an_unknown_exception_is_transient_and_keeps_its_traceback(self, user):
        job = enqueue("crash", user=user)
        assert run_job(job.pk) == "retrying"
        job.refresh_from_db()
        assert "ZeroDivisionError" in job.last_error and "Traceback" in job.last_error

    @pytest.mark.django_db(transaction=True)
    def test_the_same_job_raced_by_two_threads_runs_once(self, user):
        job = enqueue("record", user=user, payload={"sleep_s": 0.3})
        results: list[str] = []
        barrier = threading.Barrier(2)

        def deliver() -> None:
            barrier.wait()
            try:
                results.append(run_job(job.pk))
            finally:
                connection.close()

        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["not-claimed", "succeeded"]
        assert Execution.objects.filter(job_id=job.pk, phase="started").count() == 1


class TestDeadline:
    @pytest.fixture(autouse=True)
    def short_deadline(self, pipeline_config):
        pipeline_config(job_wall_clock_cap_s=0.3)

    def test_a_cooperative_processor_stops_at_the_deadline_with_timed_out(self, user, caplog):
        job = enqueue("slow", user=user, payload={"seconds": 5})
        with caplog.at_level(logging.INFO, logger="jobs.metrics"):
            assert run_job(job.pk) == "succeeded"
        job.refresh_from_db()
        assert job.metrics["timedOut"] is True
        assert job.metrics["durationMs"] < 2000
        line = json.loads(caplog.records[-1].getMessage())
        assert line["timedOut"] is True

    def test_a_processor_that_overruns_is_stopped_at_its_checkpoint_and_retried(self, user):
        job = enqueue("slow", user=user, payload={"seconds": 5, "cooperative": False})
        assert run_job(job.pk) == "retrying"
        job.refresh_from_db()
        assert job.metrics["timedOut"] is True
        assert "DeadlineExceeded" in job.last_error


class TestMetricsLine:
    def test_one_json_line_per_run_with_exactly_the_agreed_keys(self, user, caplog):
        job = enqueue("record", user=user, payload={"items": 3})
        with caplog.at_level(logging.INFO, logger="jobs.metrics"):
            run_job(job.pk)
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "jobs.metrics"]
        assert len(lines) == 1
        line = lines[0]
        assert set(line) == {
            "itemsFetched", "itemsInserted", "itemsSkipped", "durationMs", "userId", "batchId",
            "timedOut", "jobId", "kind", "attempt", "status",
        }  # fmt: skip
        assert line["itemsFetched"] == 3 and line["itemsInserted"] == 3
        assert line["itemsSkipped"] == 0 and line["timedOut"] is False
        assert line["userId"] == user.pk and line["batchId"] == str(job.batch_id)
        assert line["jobId"] == job.pk and line["kind"] == "record"
        assert line["attempt"] == 1 and line["status"] == "succeeded"
        assert isinstance(line["durationMs"], int)
        job.refresh_from_db()
        assert {k: job.metrics[k] for k in line} == line


class TestFollowUps:
    def test_a_continuation_takes_the_lane_after_its_parent_finished(self, user):
        job = enqueue("record", user=user, payload={"continue_times": 2}, dedupe_key="lane:x")
        report = run_due_jobs(until_empty=True)
        assert report.ran == 3
        chain = list(Job.objects.filter(batch_id=job.batch_id).order_by("id"))
        assert [j.status for j in chain] == [JobStatus.SUCCEEDED] * 3
        assert chain[1].parent_id == chain[0].pk and chain[2].parent_id == chain[1].pk
        assert {j.dedupe_key for j in chain} == {"lane:x"}

    def test_a_failed_run_starts_no_next_stage(self, user):
        enqueue("record", user=user, payload={"fail_permanent": True, "next_kind": "noop"})
        run_due_jobs(until_empty=True)
        assert not Job.objects.filter(kind="noop").exists()

    def test_the_next_stage_shares_the_batch(self, user):
        job = enqueue("record", user=user, payload={"next_kind": "noop"})
        run_due_jobs(until_empty=True)
        nxt = Job.objects.get(kind="noop")
        assert nxt.batch_id == job.batch_id and nxt.parent_id == job.pk
        assert nxt.status == JobStatus.SUCCEEDED


class TestCancelAndTick:
    def test_cancel_stops_a_queued_job_at_once(self, user):
        job = enqueue("record", user=user)
        assert job_cancel(job_ids=[job.pk]) == (1, 0)
        assert run_job(job.pk) == "not-claimed"
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED and effects(job) == 0

    @pytest.mark.django_db(transaction=True)
    def test_a_running_job_stops_at_its_next_checkpoint(self, user, pipeline_config):
        pipeline_config(cancel_check_interval_s=0.05)
        job = enqueue("record", user=user, payload={"sleep_s": 10})
        t = threading.Thread(target=lambda: (run_job(job.pk), connection.close()))
        t.start()
        deadline = timezone.now() + timedelta(seconds=5)
        while not Execution.objects.filter(job_id=job.pk).exists():
            assert timezone.now() < deadline
        assert job_cancel(job_ids=[job.pk]) == (0, 1)
        t.join(timeout=5)
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED and effects(job) == 0

    def test_tick_returns_a_job_whose_lease_expired(self, user):
        job = enqueue("record", user=user)
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.RUNNING,
            attempts=1,
            locked_by="dead-host:1",
            lease_expires_at=timezone.now() - timedelta(seconds=1),
        )
        result = tick()
        assert result.leases_expired == 1
        job.refresh_from_db()
        assert job.status == JobStatus.RETRYING
        assert "lease expired" in job.errors[-1]["error"]
        assert run_job(job.pk) == "succeeded" and effects(job) == 1

    def test_tick_reoffers_due_jobs_that_were_never_delivered(self, user):
        job = enqueue("record", user=user, run_after=timezone.now() + timedelta(seconds=1))
        Job.objects.filter(pk=job.pk).update(run_after=timezone.now())
        before = OrmQ.objects.count()
        assert tick().offered == 1
        assert OrmQ.objects.count() == before + 1
        assert tick().offered == 0  # offered recently; not offered again every tick
