"""Issue 8, engine items: cancels that always win, fenced writes, tracked work, the database's
clock, a hand-off that never raises, bounded re-offers, prompt retries. Real Postgres."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from datetime import datetime, timedelta

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from jobs.config import get_config
from jobs.context import JobContext
from jobs.enqueue import enqueue
from jobs.errors import LeaseLost
from jobs.models import GoogleAccount, Interaction, Job, JobStatus, RawEvent
from jobs.runner import LEASE_EXPIRED, claim, run_due_jobs, run_job, tick
from tests.cluster import REDIS_URL, redis_reachable
from tests.testapp.models import Execution
from tests.testapp.processors import GATES

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def messages(generated_messages) -> list[dict]:
    return generated_messages[:30]


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

    @pytest.mark.parametrize("runner", ["tick", "run_due_jobs", "a delivery"])
    def test_item1_rows_stuck_retrying_with_a_cancel_are_finished_as_cancelled(self, user, runner):
        # As an older version left them: retrying, cancel requested, holding the lane.
        stuck = enqueue("partial", user=user)
        Job.objects.filter(pk=stuck.pk).update(
            status=JobStatus.RETRYING, attempts=1, cancel_requested=True
        )
        assert enqueue("partial", user=user).deduplicated  # the lane is dead
        if runner == "tick":
            tick()
        elif runner == "run_due_jobs":
            run_due_jobs(until_empty=True)
        else:
            assert run_job(stuck.pk) == "not-claimed"
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

    def test_item2_a_normalization_cancelled_as_it_reaches_its_deadline_starts_nothing(
        self, user, account, messages, pipeline_config
    ):
        pipeline_config(normalize_chunk_size=10, job_wall_clock_cap_s=0.3)
        batch = store(user, messages[:25])
        job = enqueue(
            "normalize_gmail", user=user, payload={"account_id": account.pk}, batch_id=batch
        )
        # The operator's cancel lands while the first chunk is written, and that chunk takes
        # the run past its deadline: the loop stops at deadline_reached() and never reaches
        # checkpoint(), as it does in production.
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                CREATE FUNCTION test_cancel_midchunk() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  UPDATE {Job._meta.db_table} SET cancel_requested = true WHERE id = {job.pk};
                  PERFORM pg_sleep(0.35);
                  RETURN NULL;
                END $$;
                CREATE TRIGGER test_cancel_midchunk AFTER INSERT ON {Interaction._meta.db_table}
                    FOR EACH STATEMENT EXECUTE FUNCTION test_cancel_midchunk();
                """
            )
        assert run_job(job.pk) == "cancelled"
        assert Interaction.objects.filter(user=user).count() == 10  # the chunk it finished
        assert list(Job.objects.values_list("pk", flat=True)) == [job.pk]  # no continuation
        job.refresh_from_db()
        assert job.metrics["itemsInserted"] == 10 and job.metrics["timedOut"] is True


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


def steal(job: Job, *, by: str = "other-host:99") -> Job:
    """What happens to a job whose worker stalled: its lease expires, tick() returns it, and
    another worker claims it."""
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert tick().leases_expired == 1
    stolen = claim(job.pk, by, config=get_config())
    assert stolen is not None and stolen.attempts == job.attempts + 1
    return stolen


class TestItem3LeaseFence:
    def test_item3_a_late_normalizer_after_tick_took_its_job_changes_nothing(
        self, user, account, messages
    ):
        from jobs.processors import normalize_gmail

        batch = store(user, messages[:25])
        job = enqueue(
            "normalize_gmail", user=user, payload={"account_id": account.pk}, batch_id=batch
        )
        late = claim(job.pk, "stalled-host:1", config=get_config())
        ctx = JobContext(
            job=late,
            payload=normalize_gmail.NormalizePayload(account_id=account.pk),
            deadline=time.monotonic() + 600,
            logger=logging.getLogger("test"),
        )
        steal(late)
        # The stalled worker wakes up and runs its normalization.
        with pytest.raises(LeaseLost):
            normalize_gmail.run(late, ctx)
        assert not Interaction.objects.exists()
        assert set(RawEvent.objects.values_list("status", flat=True)) == {"pending"}
        current = Job.objects.get(pk=job.pk)
        assert (current.status, current.locked_by, current.attempts) == (
            JobStatus.RUNNING,
            "other-host:99",
            2,
        )

    def test_item3_the_holder_of_the_lease_writes(self, user, account, messages):
        batch = store(user, messages[:25])
        job = enqueue(
            "normalize_gmail", user=user, payload={"account_id": account.pk}, batch_id=batch
        )
        assert run_job(job.pk) == "succeeded"
        assert Interaction.objects.filter(user=user).count() == 25


@pytest.mark.django_db(transaction=True)
class TestItem3LeaseFenceWithThreads:
    def run_in_thread(self, job: Job) -> tuple[threading.Thread, list[str], threading.Event]:
        entered, release = threading.Event(), threading.Event()
        GATES[job.pk] = (entered, release)
        results: list[str] = []

        def work() -> None:
            try:
                results.append(run_job(job.pk))
            finally:
                connection.close()

        thread = threading.Thread(target=work)
        thread.start()
        assert entered.wait(timeout=10)
        return thread, results, release

    def test_item3_a_late_worker_after_tick_took_its_job_changes_nothing(self, user, caplog):
        job = enqueue("fenced", user=user, payload={"rows": 3})
        thread, results, release = self.run_in_thread(job)
        try:
            job.refresh_from_db()
            steal(job)
        finally:
            release.set()
            thread.join(timeout=30)
            GATES.pop(job.pk, None)
        assert results == ["lease-lost"]
        assert not Execution.objects.filter(job_id=job.pk).exists()
        current = Job.objects.get(pk=job.pk)
        assert current.status == JobStatus.RUNNING and current.locked_by == "other-host:99"
        assert current.attempts == 2 and current.metrics == {}
        assert [e["error"] for e in current.errors] == [LEASE_EXPIRED]
        lines = [line for line in metrics_lines(caplog) if line["jobId"] == job.pk]
        assert [line["status"] for line in lines] == ["lease-lost"]

    def test_item3_tick_cannot_take_a_job_while_its_fenced_write_is_open(self, user):
        job = enqueue("fenced", user=user)
        claimed = claim(job.pk, "w:1", config=get_config())
        ctx = JobContext(
            job=claimed,
            payload=None,  # type: ignore[arg-type]
            deadline=time.monotonic() + 60,
            logger=logging.getLogger("test"),
        )
        Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        errors: list[BaseException] = []

        def tick_elsewhere() -> None:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SET lock_timeout = '300ms'")
                tick()
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        with transaction.atomic():
            ctx.fence()
            thread = threading.Thread(target=tick_elsewhere)
            thread.start()
            thread.join(timeout=10)
        assert len(errors) == 1 and "lock timeout" in str(errors[0])
        # once the fenced write committed, tick returns the job as usual
        assert tick().leases_expired == 1

    def test_item3_fence_refuses_to_run_outside_a_transaction(self, user):
        job = enqueue("fenced", user=user)
        ctx = JobContext(
            job=claim(job.pk, "w:1", config=get_config()),
            payload=None,  # type: ignore[arg-type]
            deadline=time.monotonic() + 60,
            logger=logging.getLogger("test"),
        )
        with transaction.atomic():
            ctx.fence()  # held: no error
        with pytest.raises(RuntimeError, match=r"inside transaction\.atomic"):
            ctx.fence()  # alone it would lock nothing


@pytest.fixture
def broker_down(monkeypatch):
    """django-q2 configured with a broker that cannot be reached (every enqueue raises)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "BROKER_CLASS", "tests.testapp.brokers.DownBroker")


@pytest.mark.django_db(transaction=True)
class TestItem5HandOffAfterCommit:
    def test_item5_a_broker_error_after_commit_is_logged_and_left_to_tick(
        self, user, broker_down, monkeypatch, caplog
    ):
        from django_q.conf import Conf
        from django_q.models import OrmQ

        with caplog.at_level(logging.ERROR, logger="jobs.broker"), transaction.atomic():
            job = enqueue("record", user=user)
        assert "tick will offer them again" in caplog.text and f"job {job.pk}" in caplog.text
        job.refresh_from_db()
        assert job.status == JobStatus.QUEUED and job.offered_at is None
        monkeypatch.setattr(Conf, "BROKER_CLASS", None)  # the broker is back
        assert tick().offered == 1
        assert OrmQ.objects.count() == 1

    def test_item5_the_oauth_callback_answers_after_a_broker_error(
        self, client, user, google_settings, emulator, broker_down, caplog
    ):
        from tests.jobs.google.test_oauth_views import consent

        emulator.require_token = True
        client.force_login(user)
        callback = consent(client, emulator)
        with caplog.at_level(logging.ERROR, logger="jobs.broker"):
            response = client.get(callback)
        assert response.status_code == 302  # not a 500 after the account was saved
        assert GoogleAccount.objects.filter(user=user).exists()
        jobs = Job.objects.filter(user=user)
        assert jobs.exists() and not jobs.exclude(offered_at=None).exists()
        assert "tick will offer them again" in caplog.text

    def test_item5_a_run_whose_follow_up_hand_off_fails_still_logs_its_metrics_line(
        self, user, broker_down, caplog
    ):
        job = Job.objects.create(
            user=user, kind="record", payload={"next_kind": "noop"}, run_after=timezone.now()
        )
        with caplog.at_level(logging.INFO):
            assert run_job(job.pk) == "succeeded"
        assert [line["jobId"] for line in metrics_lines(caplog)] == [job.pk]
        nxt = Job.objects.get(kind="noop")
        assert nxt.status == JobStatus.QUEUED and nxt.offered_at is None


def db_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


@pytest.fixture
def skewed_clock(monkeypatch):
    """Set this process's clock (django.utils.timezone.now) off by `seconds`; the database's
    clock stays right. skewed_clock(0) puts it back."""
    real_now = timezone.now

    def skew(seconds: float) -> None:
        monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(seconds=seconds))

    return skew


HOUR = 3600


class TestItem4DatabaseClock:
    def test_item4_a_worker_whose_clock_is_behind_claims_a_due_job(self, user, skewed_clock):
        job = enqueue("record", user=user)
        skewed_clock(-HOUR)
        assert run_job(job.pk) == "succeeded"

    def test_item4_a_job_enqueued_on_a_host_ahead_is_due_at_once(self, user, skewed_clock):
        skewed_clock(+HOUR)
        job = enqueue("record", user=user)
        skewed_clock(0)
        assert job.run_after <= db_now()
        assert run_job(job.pk) == "succeeded"

    def test_item4_the_lease_follows_the_database_clock(self, user, skewed_clock):
        job = enqueue("record", user=user)
        skewed_clock(-HOUR)
        claimed = claim(job.pk, "behind:1", config=get_config())
        lease_s = get_config().job_wall_clock_cap_s + get_config().lease_grace_s
        skewed_clock(0)
        expected = db_now() + timedelta(seconds=lease_s)
        assert abs((claimed.lease_expires_at - expected).total_seconds()) < 5
        assert tick().leases_expired == 0  # a live job is not taken from its worker
        skewed_clock(+HOUR)  # nor by a tick on a host whose clock is ahead
        assert tick().leases_expired == 0
        assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING

    def test_item4_backoff_follows_the_database_clock(self, user, skewed_clock):
        job = enqueue("record", user=user, payload={"fail_transient_times": 1})
        skewed_clock(+HOUR)
        assert run_job(job.pk) == "retrying"
        skewed_clock(0)
        job.refresh_from_db()
        # attempt 1: full jitter over [0, 2 s] (tests.settings), from the database's now
        wait = (job.run_after - db_now()).total_seconds()
        assert wait <= 2.5
        at = datetime.fromisoformat(job.errors[-1]["at"])
        assert abs((at - db_now()).total_seconds()) < 5
        assert abs((job.updated_at - db_now()).total_seconds()) < 5


def backlog(user, n: int) -> list[int]:
    """n due jobs, never offered (as a `handoff: none` enqueue or a failed hand-off leaves them)."""
    now = db_now()
    Job.objects.bulk_create(
        Job(user=user, kind="noop", run_after=now, offered_at=None) for _ in range(n)
    )
    return list(Job.objects.order_by("id").values_list("pk", flat=True))


def time_passes(seconds: float) -> None:
    """As if `seconds` went by for every waiting job (no worker consumed anything)."""
    Job.objects.update(
        run_after=F("run_after") - timedelta(seconds=seconds),
        offered_at=F("offered_at") - timedelta(seconds=seconds),
    )


class TestItem6ReOffers:
    def test_item6_the_broker_queue_does_not_grow_under_a_2000_job_backlog(self, user):
        from django_q.models import OrmQ

        ids = backlog(user, 2000)
        assert tick().offered == 1000 and tick().offered == 1000  # 1,000 per tick
        assert OrmQ.objects.count() == 2000
        started = time.monotonic()
        for _ in range(5):  # five ticks, each past reoffer_after_s: nothing is duplicated
            time_passes(get_config().reoffer_after_s + 1)
            assert tick().offered == 0
        per_tick = (time.monotonic() - started) / 5
        assert OrmQ.objects.count() == 2000
        assert per_tick < 2.0, f"a tick over a 2,000-message queue took {per_tick:.2f} s"
        # Messages the broker lost are offered again, and only those.
        lost = OrmQ.objects.order_by("id")[:10]
        lost_ids = set()
        for message in lost:
            lost_ids.add(message.task["args"][0])
            message.delete()
        time_passes(get_config().reoffer_after_s + 1)
        assert tick().offered == 10
        assert OrmQ.objects.count() == 2000
        newest = OrmQ.objects.order_by("-id")[:10]
        assert {m.task["args"][0] for m in newest} == lost_ids <= set(ids)

    @pytest.mark.skipif(not redis_reachable(), reason="no Redis server reachable at REDIS_URL")
    def test_item6_the_redis_queue_does_not_grow_either(self, user, monkeypatch):
        from django_q.brokers import get_broker
        from django_q.conf import Conf

        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
        monkeypatch.setattr(Conf, "CLUSTER_NAME", f"engine-test-{uuid.uuid4().hex[:8]}")
        broker = get_broker()
        try:
            backlog(user, 300)
            assert tick().offered == 300
            for _ in range(3):
                time_passes(get_config().reoffer_after_s + 1)
                assert tick().offered == 0
            assert broker.queue_size() == 300
            broker.connection.lpop(broker.list_key, 5)  # five messages lost
            time_passes(get_config().reoffer_after_s + 1)
            assert tick().offered == 5
            assert broker.queue_size() == 300
        finally:
            broker.delete_queue()

    def test_item6_a_broker_that_cannot_be_read_gets_exponential_re_offers(self, user, monkeypatch):
        from django_q.conf import Conf
        from django_q.models import OrmQ

        monkeypatch.setattr(Conf, "BROKER_CLASS", "tests.testapp.brokers.OpaqueBroker")
        backlog(user, 50)
        assert tick().offered == 50
        reoffer = get_config().reoffer_after_s  # 300 s
        offers = []
        for _ in range(60):  # an hour of one-minute ticks with nobody consuming
            time_passes(60)
            offers.append(tick().offered)
        # Re-offered once the job has waited twice as long as at its last offer (5, ~10, ~20,
        # ~40 minutes after it was due, give or take a tick) instead of every 5 minutes.
        minutes = [i + 1 for i, n in enumerate(offers) if n]
        assert minutes[0] * 60 == reoffer and len(minutes) == 4
        for earlier, later in itertools.pairwise(minutes):
            assert 2 * earlier <= later <= 2 * earlier + 1
        assert set(offers) == {0, 50}
        assert OrmQ.objects.count() == 50 * 5


class TestItem8HandOffPump:
    def test_item8_the_pump_offers_due_retries_once_and_nothing_early(self, user):
        from django_q.models import OrmQ

        from jobs.pump import offer_due_unoffered

        due = enqueue("record", user=user, payload={"fail_transient_times": 1})
        later = enqueue("record", user=user, payload={"fail_transient_times": 1, "retry_after": 60})
        for job in (due, later):
            assert run_job(job.pk) == "retrying"
        Job.objects.filter(pk=due.pk).update(run_after=db_now())
        before = OrmQ.objects.count()
        assert offer_due_unoffered() == 1
        assert offer_due_unoffered() == 0  # offered once
        assert OrmQ.objects.count() == before + 1
        assert {m.task["args"][0] for m in OrmQ.objects.order_by("-id")[:1]} == {due.pk}
        assert Job.objects.get(pk=later.pk).offered_at is None

    def test_item8_a_delivery_before_the_job_is_due_leaves_it_to_the_pump(self, user):
        from django.db.models.functions import Now

        from jobs.pump import offer_due_unoffered

        job = enqueue("record", user=user)  # offered at once
        Job.objects.filter(pk=job.pk).update(run_after=Now() + timedelta(seconds=60))
        assert run_job(job.pk) == "not-claimed"  # the broker delivered it early
        assert Job.objects.get(pk=job.pk).offered_at is None
        Job.objects.filter(pk=job.pk).update(run_after=Now())
        assert offer_due_unoffered() == 1


class TestPriorityOrder:
    def prioritised(self, user) -> list[Job]:
        now = db_now()
        # (priority, seconds since due): a backfill due long ago, urgent ones due later
        specs = [(5, 300), (0, 10), (9, 600), (0, 20), (5, 100)]
        return [
            Job.objects.create(
                user=user, kind="record", priority=p, run_after=now - timedelta(seconds=age)
            )
            for p, age in specs
        ]

    def test_run_due_jobs_runs_by_priority_then_run_after(self, user):
        jobs = self.prioritised(user)
        run_due_jobs(until_empty=True)
        ran = list(
            Execution.objects.filter(phase="started")
            .order_by("id")
            .values_list("job_id", flat=True)
        )
        assert ran == [jobs[3].pk, jobs[1].pk, jobs[0].pk, jobs[4].pk, jobs[2].pk]

    def test_tick_offers_by_priority_then_run_after(self, user):
        from django_q.models import OrmQ

        jobs = self.prioritised(user)
        assert tick().offered == 5
        offered = [m.task["args"][0] for m in OrmQ.objects.order_by("id")]
        assert offered == [jobs[3].pk, jobs[1].pk, jobs[0].pk, jobs[4].pk, jobs[2].pk]


@pytest.mark.django_db(transaction=True)
def test_item8_the_pump_waits_while_the_broker_is_down(user, broker_down, caplog):
    from jobs.pump import HandOffPump

    Job.objects.create(user=user, kind="noop", run_after=timezone.now(), offered_at=None)
    pump = HandOffPump(interval_s=0.05)
    with caplog.at_level(logging.ERROR, logger="jobs.broker"):
        pump.start()
        time.sleep(1.0)
        pump.stop()
        pump.join(timeout=5)
    assert not pump.is_alive()
    failures = [r for r in caplog.records if r.name == "jobs.broker"]
    assert len(failures) == 1  # one try, then a pause; not one a tick of the loop
    assert Job.objects.get().offered_at is None  # left to the next try (or tick)


@pytest.mark.django_db(transaction=True)
def test_the_pump_returns_expired_leases_without_waiting_for_tick(user):
    """tick runs as a django-q2 task, behind whatever the broker holds; the pump thread returns
    a dead worker's job (its lease expired) on its own, and offers it again."""
    from django.db.models.functions import Now

    from jobs.pump import HandOffPump

    job = Job.objects.create(
        user=user,
        kind="noop",
        status=JobStatus.RUNNING,
        attempts=1,
        locked_by="lost-host:1",
        lease_expires_at=timezone.now() - timedelta(seconds=5),
        offered_at=timezone.now() - timedelta(minutes=5),
    )
    live = Job.objects.create(
        user=user,
        kind="noop",
        status=JobStatus.RUNNING,
        attempts=1,
        locked_by="live-host:1",
        lease_expires_at=timezone.now() + timedelta(minutes=10),
    )
    Job.objects.filter(pk=job.pk).update(lease_expires_at=Now() - timedelta(seconds=5))
    pump = HandOffPump(interval_s=0.05, lease_check_interval_s=0.1)
    pump.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.status != JobStatus.RUNNING and job.offered_at is not None:
                break
            time.sleep(0.05)
    finally:
        pump.stop()
        pump.join(timeout=5)
    job.refresh_from_db()
    assert job.status == JobStatus.RETRYING
    assert job.last_error == LEASE_EXPIRED
    assert [e["error"] for e in job.errors] == [LEASE_EXPIRED]
    assert job.offered_at is not None  # handed to the broker again by the same pump
    assert Job.objects.get(pk=live.pk).status == JobStatus.RUNNING


def test_a_long_traceback_keeps_its_last_line_the_error_itself(user):
    job = enqueue("deep_crash", user=user)
    assert run_job(job.pk) == "retrying"
    job.refresh_from_db()
    recorded = job.errors[-1]["error"]
    assert recorded == job.last_error
    assert len(recorded) <= 4000
    assert recorded.startswith("Traceback (most recent call last):")
    assert "ValueError: deep inside a library" in recorded
    # the error itself, the traceback's last line, is kept (the middle of the frames is not)
    assert recorded.rstrip().splitlines()[-1] == "RuntimeError: the real cause is on the last line"
    assert "characters left out" in recorded


@pytest.mark.parametrize("size", [4000, 4001, 5000, 13_999, 1_000_000])
def test_clip_error_keeps_both_ends_and_says_how_much_it_left_out(size):
    from jobs.runner import clip_error

    text = "".join(chr(ord("a") + i % 26) for i in range(size))
    clipped = clip_error(text)
    assert len(clipped) <= 4000
    if size <= 4000:
        assert clipped == text
        return
    head, _, rest = clipped.partition("\n[... ")
    count, _, tail = rest.partition(" characters left out ...]\n")
    assert text.startswith(head) and text.endswith(tail)
    assert len(head) + int(count) + len(tail) == size
