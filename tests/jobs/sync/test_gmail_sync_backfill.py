"""Item 19: newest first, then the history: the first pass stores the recent window, a backfill
chain of its own (priority 5, its own lane) stores older mail back to the horizon."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from google_emulator.generator import GeneratedMailbox, generate_mailbox, make_message
from google_emulator.server import GoogleEmulator
from jobs.enqueue import enqueue
from jobs.google.accounts import google_account_connect
from jobs.models import GoogleAccount, Job, JobStatus, RawEvent, SyncState
from jobs.runner import run_due_jobs, run_job

pytestmark = pytest.mark.django_db

EXCLUDED = {"SPAM", "TRASH", "DRAFT", "CHAT"}
HISTORIAN = "hale.historian@pipeline.example"


@pytest.fixture(autouse=True)
def sync_config(pipeline_config):
    pipeline_config(
        handoff="none",
        initial_window_days=30,
        backfill_horizon_days=730,
        gmail_max_messages_per_run=150,
        gmail_chunk_pause_s=0.0,
        gmail_quota_units_per_user_per_minute=10_000_000,
    )


@pytest.fixture(scope="module")
def three_years() -> GeneratedMailbox:
    return generate_mailbox(HISTORIAN, messages=720, events=0, seed=41, days=3 * 365)


@pytest.fixture
def historian(google_settings, three_years, user) -> Iterator[GoogleAccount]:
    with GoogleEmulator(require_token=True) as emu:
        emu.add_mailbox(HISTORIAN, three_years)
        google_settings.GOOGLE_API_ROOT = emu.url
        account = google_account_connect(
            user=user, email=HISTORIAN, refresh_token=emu.register_account(HISTORIAN)
        )
        account.emulator = emu  # type: ignore[attr-defined]
        yield account


def eligible_since(generated: GeneratedMailbox, since: datetime) -> set[str]:
    bound = since.timestamp() * 1000
    return {
        m.internal_date_ms
        for m in generated.messages
        if m.internal_date_ms >= bound and not EXCLUDED.intersection(m.label_ids)
    }


def stored_dates(account: GoogleAccount) -> set[int]:
    return {
        int(row.timestamp() * 1000)
        for row in RawEvent.objects.filter(account=account, provider="gmail").values_list(
            "occurred_at", flat=True
        )
    }


def run(kind: str, account: GoogleAccount) -> Job:
    job = enqueue(kind, user=account.user_id, payload={"account_id": account.pk})
    run_job(job.pk)
    job.refresh_from_db()
    return job


def test_item19_first_the_recent_window_then_a_low_priority_backfill_to_the_horizon(
    historian, three_years
):
    now = timezone.now()
    main = lambda: SyncState.objects.get(account=historian, resource_id="")  # noqa: E731

    # 1. The first sync: the last 30 days only, fast.
    first = run("gmail_sync", historian)
    assert first.status == JobStatus.SUCCEEDED
    assert stored_dates(historian) == eligible_since(three_years, now - timedelta(days=30))
    boundary = main().backfill_until
    assert abs(boundary - (now - timedelta(days=30))) < timedelta(minutes=1)
    backfill = Job.objects.get(kind="gmail_backfill")
    assert backfill.priority == 5 and backfill.status == JobStatus.QUEUED
    assert backfill.dedupe_key == f"gmail_backfill:{historian.pk}"
    assert backfill.batch_id != first.batch_id

    # 2. One backfill run: 150 older messages, newest first; progress on the job and the account.
    run_due_jobs(kinds=["gmail_backfill"], max_jobs=1)
    backfill.refresh_from_db()
    details = backfill.metrics["details"]
    assert backfill.status == JobStatus.SUCCEEDED and details["continues"] is True
    assert backfill.metrics["itemsInserted"] == 150 and details["listed"] >= 150
    assert details["horizon"] and details["oldestReached"]
    reached = main().backfill_until
    assert now - timedelta(days=730) < reached < boundary
    assert main().backfill_done_at is None
    assert datetime.fromisoformat(details["oldestReached"]) == reached
    continuation = Job.objects.get(parent=backfill, kind="gmail_backfill")
    assert continuation.priority == 5

    # 3. Meanwhile an incremental sync runs in its own lane and stores new mail.
    historian.emulator.mailbox().add_message(
        make_message(
            from_="Dana Reyes <dana@northwind.example>",
            to=HISTORIAN,
            subject="While the backfill runs",
            date=datetime.now(UTC).replace(microsecond=0),
        ).raw,
        label_ids=["INBOX"],
    )
    incremental = enqueue(
        "gmail_sync", user=historian.user_id, payload={"account_id": historian.pk}
    )
    assert not incremental.deduplicated and incremental.priority == 0
    run_job(incremental.pk)
    incremental.refresh_from_db()
    assert incremental.metrics["details"]["mode"] == "history"
    assert incremental.metrics["itemsInserted"] == 1

    # 4. The rest of the backfill: everything within the horizon, nothing older.
    run_due_jobs(kinds=["gmail_backfill"], until_empty=True)

    chain = Job.objects.filter(kind="gmail_backfill").order_by("id")
    assert all(job.status == JobStatus.SUCCEEDED for job in chain) and len(chain) >= 3
    horizon = now - timedelta(days=730)
    within = eligible_since(three_years, horizon)
    dates = stored_dates(historian)
    assert within <= dates and len(dates) == len(within) + 1
    assert not RawEvent.objects.filter(account=historian, occurred_at__lt=horizon).exists()
    assert len(eligible_since(three_years, now - timedelta(days=3 * 365))) > len(within)
    done = main()
    assert done.backfill_done_at is not None
    assert abs(done.backfill_until - horizon) < timedelta(minutes=1)
    assert chain.last().metrics["details"]["backfillDone"] is True
    # The backfill's batch goes on to normalization like any sync chain.
    assert Job.objects.filter(kind="normalize_gmail", batch_id=backfill.batch_id).exists()
    # Done is done: the next incremental sync starts no new backfill.
    run("gmail_sync", historian)
    assert Job.objects.filter(kind="gmail_backfill").count() == len(chain)


def test_item19_no_backfill_when_the_first_window_reaches_the_horizon(historian, pipeline_config):
    pipeline_config(initial_window_days=3650, backfill_horizon_days=730)

    run_due_jobs(kinds=["gmail_sync"], until_empty=True)
    run("gmail_sync", historian)

    assert not Job.objects.filter(kind="gmail_backfill").exists()


def test_item19_a_raised_horizon_reopens_the_finished_backfill_where_it_ended(
    historian, three_years, pipeline_config
):
    pipeline_config(backfill_horizon_days=365, gmail_max_messages_per_run=2000)
    now = timezone.now()
    run("gmail_sync", historian)
    run_due_jobs(kinds=["gmail_backfill"], until_empty=True)
    assert stored_dates(historian) == eligible_since(three_years, now - timedelta(days=365))
    assert SyncState.objects.get(account=historian, resource_id="").backfill_done_at

    pipeline_config(backfill_horizon_days=0, gmail_max_messages_per_run=2000)  # everything
    historian.emulator.log.reset()
    run("gmail_sync", historian)
    run_due_jobs(kinds=["gmail_backfill"], until_empty=True)

    everything = eligible_since(three_years, now - timedelta(days=4 * 365))
    assert stored_dates(historian) == everything
    # Only what lay beyond the old horizon was fetched again.
    fetched = historian.emulator.log.count("gmail.users.messages.get", http_only=False)
    assert fetched == len(everything - eligible_since(three_years, now - timedelta(days=365)))
    main = SyncState.objects.get(account=historian, resource_id="")
    assert main.backfill_done_at and main.backfill_until is None
    run("gmail_sync", historian)
    assert not Job.objects.filter(kind="gmail_backfill", status=JobStatus.QUEUED).exists()


def test_item15_item19_a_poison_message_of_the_backfill_is_retried_after_it_finished(
    historian, three_years, pipeline_config
):
    pipeline_config(gmail_max_messages_per_run=2000)
    now = timezone.now()
    run("gmail_sync", historian)
    historian.emulator.faults.add("gmail.users.messages.get", 400, after=5, times=1)
    run_due_jobs(kinds=["gmail_backfill"], until_empty=True)
    main = SyncState.objects.get(account=historian, resource_id="")
    rows = SyncState.objects.get(account=historian, resource_id="backfill")
    assert main.backfill_done_at and len(rows.failures) == 1
    within = eligible_since(three_years, now - timedelta(days=730))
    assert len(stored_dates(historian)) == len(within) - 1
    # Not due: the next chain end starts no backfill run.
    run("gmail_sync", historian)
    assert not Job.objects.filter(kind="gmail_backfill", status=JobStatus.QUEUED).exists()

    past = (timezone.now() - timedelta(seconds=1)).isoformat()
    rows.failures = {key: {**record, "retryAt": past} for key, record in rows.failures.items()}
    rows.save()
    run("gmail_sync", historian)
    run_due_jobs(kinds=["gmail_backfill"], until_empty=True)

    assert stored_dates(historian) == within
    assert SyncState.objects.get(pk=rows.pk).failures == {}
    assert SyncState.objects.get(pk=main.pk).backfill_done_at == main.backfill_done_at


def test_item2_item19_a_sync_cancelled_during_its_first_pass_starts_no_backfill(
    historian, monkeypatch
):
    """The backfill is a follow-up of the run: a cancel that lands while the first pass runs
    wins over the run's success, and no backfill chain starts."""
    from jobs.sync import gmail as gmail_module

    real = gmail_module._GmailRun.execute

    def cancelled_meanwhile(self, *args, **kwargs):
        outcome = real(self, *args, **kwargs)
        Job.objects.filter(kind="gmail_sync").update(cancel_requested=True)
        return outcome

    monkeypatch.setattr(gmail_module._GmailRun, "execute", cancelled_meanwhile)

    first = run("gmail_sync", historian)

    assert first.status == JobStatus.CANCELLED
    assert not Job.objects.filter(kind="gmail_backfill").exists()
    assert not Job.objects.filter(kind="normalize_gmail").exists()
