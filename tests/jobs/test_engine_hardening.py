"""Issue 8, engine items: cancels that always win, fenced writes, tracked work, the database's
clock, a hand-off that never raises, bounded re-offers, prompt retries. Real Postgres."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from django.db import connection

from jobs.enqueue import enqueue
from jobs.models import GoogleAccount, Interaction, Job, JobStatus, RawEvent
from jobs.runner import run_due_jobs, run_job, tick
from jobs.sync.convert import gmail_message_from_rfc822
from tests.fixtures.emulator import ALIAS, OWNER
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def messages(generated_mailbox) -> list[dict]:
    return [
        gmail_message_from_rfc822(
            m.raw, label_ids=list(m.label_ids), internal_date_ms=m.internal_date_ms
        )
        for m in generated_mailbox.messages[:30]
    ]


@pytest.fixture
def account(user) -> GoogleAccount:
    return GoogleAccount.objects.create(user=user, email=OWNER, addresses=[OWNER, ALIAS])


def store(user, payloads) -> uuid.UUID:
    batch_id = uuid.uuid4()
    RawEvent.objects.bulk_create(
        RawEvent(user=user, provider="gmail", source_id=p["id"], payload=p, batch_id=batch_id)
        for p in payloads
    )
    return batch_id


def metrics_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "jobs.metrics"]


class TestItem1CancelWinsOverEveryOutcome:
    @pytest.mark.parametrize("ends", ["transient", "deadline", "crash", "permanent", "success"])
    def test_item1_cancel_during_a_run_ends_cancelled_whatever_the_run_ended_with(
        self, user, caplog, ends
    ):
        job = enqueue("partial", user=user, payload={"cancel_midrun": True, "ends": ends})
        with caplog.at_level(logging.INFO, logger="jobs.metrics"):
            assert run_job(job.pk) == "cancelled"
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED and job.finished_at is not None
        assert job.metrics["status"] == "cancelled"
        assert metrics_lines(caplog)[-1]["status"] == "cancelled"
        # the lane is free again: the next job of the lane is a new one, not the dead one
        nxt = enqueue("partial", user=user)
        assert not nxt.deduplicated and nxt.pk != job.pk

    def test_item1_cancel_after_transient_error_ends_cancelled(self, user):
        job = enqueue("partial", user=user, payload={"cancel_midrun": True, "ends": "transient"})
        run_job(job.pk)
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED
        assert "asked to fail after storing" in job.last_error  # what happened is kept
        assert run_due_jobs(until_empty=True).ran == 0

    @pytest.mark.parametrize("runner", ["tick", "run_due_jobs"])
    def test_item1_rows_stuck_retrying_with_a_cancel_are_finished_as_cancelled(self, user, runner):
        # As an older version left them: retrying, cancel requested, holding the lane.
        stuck = enqueue("partial", user=user)
        Job.objects.filter(pk=stuck.pk).update(
            status=JobStatus.RETRYING, attempts=1, cancel_requested=True
        )
        assert enqueue("partial", user=user).deduplicated  # the lane is dead
        tick() if runner == "tick" else run_due_jobs(until_empty=True)
        stuck.refresh_from_db()
        assert stuck.status == JobStatus.CANCELLED and stuck.finished_at is not None
        assert not enqueue("partial", user=user).deduplicated


class TestItem2CancelStopsTheChain:
    def test_item2_a_cancelled_run_that_returns_at_its_deadline_starts_nothing(self, user):
        # As the sync and normalization loops do at their deadline: save the place, continue.
        job = enqueue(
            "partial", user=user, payload={"cancel_midrun": True, "ends": "success", "follow": True}
        )
        assert run_job(job.pk) == "cancelled"
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED
        assert list(Job.objects.values_list("pk", flat=True)) == [job.pk]  # no continuation
        assert not Job.objects.filter(kind="noop").exists()  # no next stage

    def test_item2_without_a_cancel_the_same_run_continues(self, user):
        job = enqueue("partial", user=user, payload={"follow": True})
        assert run_job(job.pk) == "succeeded"
        assert Job.objects.filter(parent=job, kind="partial").exists()
        assert Job.objects.filter(parent=job, kind="noop").exists()


class TestItem9FailedAttemptsCountTheirWork:
    @pytest.mark.parametrize(
        ("ends", "status"),
        [
            ("transient", "retrying"),
            ("crash", "retrying"),
            ("permanent", "failed"),
            ("deadline", "retrying"),
            ("cancel", "cancelled"),
            ("success", "succeeded"),
        ],
    )
    def test_item9_an_attempt_that_stored_rows_then_ended_counts_them(
        self, user, caplog, ends, status
    ):
        job = enqueue("partial", user=user, payload={"items": 7, "ends": ends})
        with caplog.at_level(logging.INFO, logger="jobs.metrics"):
            assert run_job(job.pk) == status
        assert Execution.objects.filter(job_id=job.pk).count() == 7
        line = metrics_lines(caplog)[-1]
        assert line["itemsFetched"] == 7 and line["itemsInserted"] == 7
        assert line["status"] == status
        job.refresh_from_db()
        assert job.metrics["itemsInserted"] == 7 and job.metrics["attempt"] == 1

    def test_item9_a_normalization_that_fails_after_a_chunk_counts_the_chunk(
        self, user, account, messages, pipeline_config, caplog
    ):
        pipeline_config(normalize_chunk_size=10)
        batch = store(user, messages[:25])
        # A real database failure from the second chunk on: the interaction table refuses any
        # insert once it holds 10 rows.
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                CREATE FUNCTION test_refuse_after_ten() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF (SELECT count(*) FROM {Interaction._meta.db_table}) >= 10 THEN
                    RAISE EXCEPTION 'disk full (test)';
                  END IF;
                  RETURN NULL;
                END $$;
                CREATE TRIGGER test_refuse_after_ten BEFORE INSERT
                    ON {Interaction._meta.db_table}
                    FOR EACH STATEMENT EXECUTE FUNCTION test_refuse_after_ten();
                """
            )
        job = enqueue(
            "normalize_gmail", user=user, payload={"account_id": account.pk}, batch_id=batch
        )
        with caplog.at_level(logging.INFO, logger="jobs.metrics"):
            assert run_job(job.pk) == "retrying"
        job.refresh_from_db()
        assert "disk full (test)" in job.last_error
        assert Interaction.objects.filter(user=user).count() == 10
        assert job.metrics["itemsFetched"] == 10 and job.metrics["itemsInserted"] == 10
        assert metrics_lines(caplog)[-1]["itemsInserted"] == 10
