"""gmail_sync against the emulator: capped passes, continuations, history increments, faults."""

from __future__ import annotations

import uuid
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
from jobs.sync.gmail import gmail_sync
from tests.fixtures.emulator import OWNER

pytestmark = pytest.mark.django_db

EXCLUDED = {"SPAM", "TRASH", "DRAFT", "CHAT"}
BIG_OWNER = "casey.big@pipeline.example"


@pytest.fixture(autouse=True)
def sync_config(pipeline_config):
    # The fixture mailbox lies in early 2025: a window wide enough to hold it, no pacing.
    pipeline_config(
        handoff="none",
        initial_window_days=3650,
        gmail_chunk_pause_s=0.0,
        gmail_quota_units_per_user_per_minute=10_000_000,
    )


def eligible(generated: GeneratedMailbox) -> int:
    return sum(1 for m in generated.messages if not EXCLUDED.intersection(m.label_ids))


def sync(account: GoogleAccount, **payload: object) -> Job:
    job = enqueue("gmail_sync", user=account.user_id, payload={"account_id": account.pk, **payload})
    run_job(job.pk)
    job.refresh_from_db()
    return job


def chain(account: GoogleAccount) -> list[Job]:
    return list(Job.objects.filter(user_id=account.user_id, kind="gmail_sync").order_by("id"))


def stored(account: GoogleAccount) -> int:
    return RawEvent.objects.filter(user_id=account.user_id, provider="gmail").count()


def new_message(subject: str) -> bytes:
    return make_message(
        from_="Dana Reyes <dana@northwind.example>",
        to=OWNER,
        subject=subject,
        date=datetime.now(UTC).replace(microsecond=0),
    ).raw


@pytest.fixture
def big_mailbox() -> GeneratedMailbox:
    return generate_mailbox(BIG_OWNER, messages=5000, events=0, seed=11, days=30)


@pytest.fixture
def big_emulator(big_mailbox: GeneratedMailbox) -> Iterator[GoogleEmulator]:
    with GoogleEmulator() as emu:
        emu.add_mailbox(BIG_OWNER, big_mailbox)
        yield emu


@pytest.fixture
def big_account(google_settings, big_emulator: GoogleEmulator, user) -> GoogleAccount:
    google_settings.GOOGLE_API_ROOT = big_emulator.url
    return google_account_connect(
        user=user, email=BIG_OWNER, refresh_token=big_emulator.register_account(BIG_OWNER)
    )


def test_a_first_sync_stores_every_eligible_message_once(google_account, generated_mailbox):
    job = sync(google_account)

    assert job.status == JobStatus.SUCCEEDED
    assert job.metrics["itemsInserted"] == eligible(generated_mailbox) == stored(google_account)
    assert job.metrics["details"]["mode"] == "window"
    state = SyncState.objects.get(account=google_account, provider="gmail")
    assert state.cursor and not (state.pass_query or state.pending_ids or state.pass_cursor)
    labels = RawEvent.objects.values_list("payload__labelIds", flat=True)
    assert not any(EXCLUDED.intersection(ids) for ids in labels)


def test_rerunning_a_sync_inserts_nothing(google_account, emulator):
    sync(google_account)

    incremental = sync(google_account)
    full = sync(google_account, full=True)

    assert incremental.metrics["itemsInserted"] == 0 and incremental.metrics["itemsFetched"] == 0
    assert full.metrics["itemsInserted"] == 0
    assert full.metrics["itemsSkipped"] == full.metrics["itemsFetched"] > 0
    assert full.metrics["details"]["itemsUpdated"] == 0


@pytest.mark.slow
def test_a_5000_message_mailbox_is_synced_2000_per_run_none_twice(
    big_account, big_emulator, big_mailbox
):
    first = sync(big_account)

    assert first.metrics["itemsInserted"] == stored(big_account) == 2000
    assert first.metrics["details"]["continues"] is True
    # 2,000 messages: 40 batches, 4 list pages of 500, the profile and a token refresh.
    assert big_emulator.log.count("batch") == 40
    assert big_emulator.log.count("gmail.users.messages.list") == 4
    assert big_emulator.log.count("gmail.users.messages.get", http_only=False) == 2000
    assert big_emulator.log.count() <= 2000 // 50 + 4 + 3
    continuation = Job.objects.get(parent=first)
    assert continuation.kind == "gmail_sync" and continuation.batch_id == first.batch_id

    run_due_jobs(kinds=["gmail_sync"], until_empty=True)

    runs = chain(big_account)
    assert [job.status for job in runs] == [JobStatus.SUCCEEDED] * 3
    assert stored(big_account) == eligible(big_mailbox)
    assert sum(job.metrics["itemsInserted"] for job in runs) == eligible(big_mailbox)
    assert sum(job.metrics["itemsFetched"] for job in runs) == eligible(big_mailbox)
    assert big_emulator.log.count("gmail.users.messages.get", http_only=False) == eligible(
        big_mailbox
    )


def test_an_incremental_run_reads_history_and_fetches_only_what_changed(google_account, emulator):
    sync(google_account)
    mailbox = emulator.mailbox()
    for n in range(3):
        mailbox.add_message(new_message(f"New deal {n}"), label_ids=["INBOX", "UNREAD"])
    starred = RawEvent.objects.filter(user_id=google_account.user_id).first()
    mailbox.modify_labels(starred.source_id, add=["STARRED"])
    emulator.log.reset()

    job = sync(google_account)

    assert job.metrics["details"]["mode"] == "history"
    assert (job.metrics["itemsInserted"], job.metrics["details"]["itemsUpdated"]) == (3, 1)
    assert job.metrics["itemsFetched"] == 4 and job.metrics["itemsSkipped"] == 0
    assert emulator.log.count("gmail.users.history.list") == 1
    assert emulator.log.count("gmail.users.messages.list") == 0
    assert emulator.log.count("gmail.users.messages.get", http_only=False) == 4
    starred.refresh_from_db()
    assert "STARRED" in starred.payload["labelIds"] and starred.status == "pending"


def test_an_expired_history_id_falls_back_to_the_window(google_account, emulator):
    sync(google_account)
    mailbox = emulator.mailbox()
    for n in range(2):
        mailbox.add_message(new_message(f"After expiry {n}"), label_ids=["INBOX"])
    mailbox.expire_history(mailbox.history_id)

    job = sync(google_account)

    assert job.metrics["details"]["mode"] == "window-fallback"
    assert job.metrics["itemsInserted"] == 2
    assert emulator.log.count("gmail.users.messages.list") >= 1
    state = SyncState.objects.get(account=google_account, provider="gmail")
    assert state.cursor == str(mailbox.history_id)
    assert sync(google_account).metrics["details"]["mode"] == "history"


def test_deleted_and_trashed_messages_update_their_rows_but_spam_is_never_stored(
    google_account, emulator
):
    sync(google_account)
    mailbox = emulator.mailbox()
    deleted, trashed = RawEvent.objects.order_by("id").values_list("source_id", flat=True)[:2]
    mailbox.delete_message(deleted)
    mailbox.modify_labels(trashed, add=["TRASH"], remove=["INBOX"])
    mailbox.add_message(new_message("You won a prize"), label_ids=["SPAM"])
    before = stored(google_account)

    job = sync(google_account)

    assert job.metrics["itemsInserted"] == 0
    assert job.metrics["details"]["itemsDeleted"] == 1
    assert job.metrics["details"]["itemsExcluded"] == 1
    assert job.metrics["details"]["itemsUpdated"] == 1
    assert stored(google_account) == before
    assert RawEvent.objects.get(source_id=deleted).payload["_deleted"] is True
    assert "TRASH" in RawEvent.objects.get(source_id=trashed).payload["labelIds"]


def test_a_429_storm_defers_the_job_to_retry_after_and_it_later_succeeds(
    google_account, emulator, generated_mailbox
):
    emulator.faults.add("gmail.users.messages.get", status=429, retry_after=60, times=None)
    job = sync(google_account)

    assert job.status == JobStatus.RETRYING
    assert job.run_after >= timezone.now() + timedelta(seconds=55)
    assert "gmail.users.messages.get" in job.last_error

    emulator.faults.clear()
    Job.objects.filter(pk=job.pk).update(run_after=timezone.now())
    run_due_jobs(kinds=["gmail_sync"], until_empty=True)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2
    assert stored(google_account) == eligible(generated_mailbox)
    assert job.metrics["itemsInserted"] == eligible(generated_mailbox)


def test_a_run_cut_by_the_deadline_is_resumed_exactly_where_it_stopped(
    google_account, emulator, generated_mailbox, pipeline_config
):
    # ~285 messages in chunks of 20 at 0.2 s a batch: ~3 s of fetching against a 1 s cap, so
    # the first run stores some chunks even when the run's opening calls are slow (a loaded CI
    # machine once spent all of a 0.4 s cap before the first chunk), and does not finish.
    pipeline_config(job_wall_clock_cap_s=1.0, gmail_chunk_size=20)
    emulator.faults.add_delay("batch", 0.2)

    first = sync(google_account)
    run_due_jobs(kinds=["gmail_sync"], until_empty=True)

    assert first.metrics["timedOut"] is True
    assert 0 < first.metrics["itemsInserted"] < eligible(generated_mailbox)
    runs = chain(google_account)
    assert len(runs) > 1 and all(job.status == JobStatus.SUCCEEDED for job in runs)
    assert runs[-1].metrics["timedOut"] is False
    # Every message fetched exactly once across the chain: no gap, no overlap.
    assert sum(job.metrics["itemsFetched"] for job in runs) == eligible(generated_mailbox)
    assert sum(job.metrics["itemsInserted"] for job in runs) == stored(google_account)
    assert stored(google_account) == eligible(generated_mailbox)


def test_the_chain_end_starts_the_next_stage_for_the_batch(google_account, monkeypatch):
    # Any registered kind taking {"account_id"} stands in for normalize_gmail.
    monkeypatch.setattr("jobs.sync.common.next_stage", lambda kind: "calendar_sync")

    job = sync(google_account)

    follow = Job.objects.get(parent=job)
    assert follow.kind == "calendar_sync" and follow.batch_id == job.batch_id
    assert follow.payload == {"account_id": google_account.pk, "full": False, "calendar_ids": []}
    assert follow.dedupe_key == f"calendar_sync:{google_account.pk}:{job.batch_id}"


def test_a_run_that_stored_nothing_starts_no_normalization(google_account, monkeypatch):
    sync(google_account)
    monkeypatch.setattr("jobs.sync.common.next_stage", lambda kind: "calendar_sync")

    job = sync(google_account)

    assert not Job.objects.filter(parent=job).exists()


def test_an_account_that_needs_reauth_fails_the_job_at_once(google_account):
    GoogleAccount.objects.filter(pk=google_account.pk).update(status="needs_reauth")

    job = sync(google_account)

    assert job.status == JobStatus.FAILED and "reconnect" in job.last_error


def test_a_page_token_gmail_no_longer_takes_restarts_the_listing(
    google_account, generated_mailbox, pipeline_config
):
    pipeline_config(gmail_max_messages_per_run=100, gmail_chunk_size=50)
    sync(google_account)
    SyncState.objects.filter(account=google_account).update(page_token="stale-token")

    run_due_jobs(kinds=["gmail_sync"], until_empty=True)

    assert all(job.status == JobStatus.SUCCEEDED for job in chain(google_account))
    assert stored(google_account) == eligible(generated_mailbox)


@pytest.mark.parametrize("chunk_size", [25, 50])
def test_each_chunk_costs_the_same_few_queries_whatever_its_size(
    google_account, generated_mailbox, pipeline_config, chunk_size, django_assert_max_num_queries
):
    pipeline_config(gmail_chunk_size=chunk_size)
    chunks = -(-eligible(generated_mailbox) // chunk_size)
    # Per chunk: the quota reservation (lock, then reserve), the upsert and the state save (in a
    # savepoint); a few per run (two per plain API call: its quota reservation).
    with django_assert_max_num_queries(6 * chunks + 20):
        result = gmail_sync(account=google_account, batch_id=uuid.uuid4())
    assert result.counts.inserted == eligible(generated_mailbox)


def test_more_history_changes_than_a_run_may_fetch_continue_in_the_next_run(
    google_account, emulator, pipeline_config
):
    sync(google_account)
    mailbox = emulator.mailbox()
    for n in range(5):
        mailbox.add_message(new_message(f"Burst {n}"), label_ids=["INBOX"])
    pipeline_config(gmail_max_messages_per_run=3)

    first = sync(google_account)
    run_due_jobs(kinds=["gmail_sync"], until_empty=True)

    second = Job.objects.get(parent=first, kind="gmail_sync")
    assert (first.metrics["itemsInserted"], second.metrics["itemsInserted"]) == (3, 2)
    assert second.metrics["details"]["mode"] == "resume"
    state = SyncState.objects.get(account=google_account, provider="gmail")
    assert state.cursor == str(mailbox.history_id) and not state.pass_cursor
