"""Several Google accounts per user, and the window, mailbox and profile checks of every sync."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from google_emulator.generator import GeneratedMailbox, generate_mailbox, make_message
from google_emulator.server import GoogleEmulator
from jobs.enqueue import enqueue
from jobs.google.accounts import google_account_connect
from jobs.models import GoogleAccount, Job, JobStatus, RawEvent, SyncState
from jobs.runner import run_due_jobs
from jobs.sync.periodic import periodic_sync
from jobs.sync.windows import gmail_window_start
from tests.fixtures.accounts import CALENDAR_READONLY, GMAIL_READONLY
from tests.fixtures.sync import eligible, sync

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("wide_sync_config")]

FIRST = "first.account@pipeline.example"
SECOND = "second.account@pipeline.example"


def stored(account: GoogleAccount, provider: str = "gmail") -> int:
    return RawEvent.objects.filter(account=account, provider=provider).count()


def connect(emulator: GoogleEmulator, user, email: str, *, token_for: str | None = None):
    """Connect `email` for `user` with a refresh token the emulator issued for `token_for`."""
    refresh_token = emulator.register_account(token_for or email)
    return google_account_connect(
        user=user,
        email=email,
        refresh_token=refresh_token,
        scopes=[GMAIL_READONLY, CALENDAR_READONLY],
    )


def enqueue_sync(*args: str) -> str:
    out = StringIO()
    call_command("enqueue_sync", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def two_mailboxes() -> tuple[GeneratedMailbox, GeneratedMailbox]:
    # Both span the same 40 days: the first account's newest mail is newer than most of the
    # second account's.
    return (
        generate_mailbox(FIRST, messages=60, events=5, seed=21, days=40),
        generate_mailbox(
            SECOND,
            messages=60,
            events=5,
            seed=22,
            days=40,
            now=datetime.now(UTC) - timedelta(minutes=1),
        ),
    )


@pytest.fixture
def two_account_emulator(two_mailboxes, google_settings) -> Iterator[GoogleEmulator]:
    with GoogleEmulator(require_token=True) as emu:
        for email, generated in zip((FIRST, SECOND), two_mailboxes, strict=True):
            emu.add_mailbox(email, generated)
        google_settings.GOOGLE_API_ROOT = emu.url
        yield emu


@pytest.fixture
def two_accounts(two_account_emulator, user) -> tuple[GoogleAccount, GoogleAccount]:
    return (
        connect(two_account_emulator, user, FIRST),
        connect(two_account_emulator, user, SECOND),
    )


# -- item 12: a second account of a user ---------------------------------------------------------


def test_item12_the_second_account_lists_its_own_backlog_not_after_the_first_accounts_newest(
    two_accounts, two_mailboxes
):
    first, second = two_accounts
    assert sync(first).status == JobStatus.SUCCEEDED
    assert stored(first) == eligible(two_mailboxes[0])

    job = sync(second)

    assert job.status == JobStatus.SUCCEEDED and job.metrics["details"]["mode"] == "window"
    assert stored(second) == eligible(two_mailboxes[1])


def test_item12_lanes_are_per_account_and_enqueue_sync_reports_each(two_accounts, user):
    first, second = two_accounts
    active = enqueue("gmail_sync", user=user, payload={"account_id": first.pk})

    out = enqueue_sync("ada", "--provider", "gmail")

    assert f"gmail_sync ({FIRST}): already active: #{active.pk}" in out
    queued = Job.objects.get(kind="gmail_sync", payload__account_id=second.pk)
    assert f"gmail_sync ({SECOND}): job #{queued.pk} queued" in out
    assert {active.dedupe_key, queued.dedupe_key} == {
        f"gmail_sync:{first.pk}",
        f"gmail_sync:{second.pk}",
    }


def test_item12_enqueue_sync_account_targets_one_account(two_accounts):
    _, second = two_accounts

    out = enqueue_sync("ada", "--account", SECOND.upper())

    jobs = Job.objects.all()
    assert {(job.kind, job.payload["account_id"]) for job in jobs} == {
        ("gmail_sync", second.pk),
        ("calendar_sync", second.pk),
    }
    assert FIRST not in out and f"calendar_sync ({SECOND}): job #" in out


def test_item12_enqueue_sync_names_an_unknown_account_clearly(two_accounts):
    with pytest.raises(
        CommandError,
        match=rf"^user 'ada' has no Google account 'nobody@pipeline\.example' "
        rf"\(connected: {FIRST}, {SECOND}\)$",
    ):
        enqueue_sync("ada", "--account", "nobody@pipeline.example")
    assert not Job.objects.exists()


def test_item12_the_periodic_schedule_starts_one_sync_per_account(two_accounts):
    first, second = two_accounts

    assert periodic_sync() == 4

    started = set(Job.objects.values_list("kind", "payload__account_id"))
    assert started == {
        (kind, account.pk)
        for kind in ("gmail_sync", "calendar_sync")
        for account in (first, second)
    }
    assert periodic_sync() == 0


def test_item12_each_accounts_chain_starts_its_own_next_stage(two_accounts, monkeypatch):
    # Any registered kind taking {"account_id"} stands in for normalize_gmail.
    monkeypatch.setattr("jobs.sync.common.next_stage", lambda kind: "selfcheck_follow")
    first, second = two_accounts
    followed: list[tuple[str, str | None]] = []
    monkeypatch.setattr(
        "jobs.context.JobContext.enqueue_next",
        lambda self, kind, payload=None, *, dedupe_key=None: followed.append((kind, dedupe_key)),
    )
    enqueue_sync("ada", "--provider", "gmail")
    batch = Job.objects.first().batch_id

    run_due_jobs(kinds=["gmail_sync"], until_empty=True)

    assert sorted(followed) == [
        ("selfcheck_follow", f"selfcheck_follow:{first.pk}:{batch}"),
        ("selfcheck_follow", f"selfcheck_follow:{second.pk}:{batch}"),
    ]


@pytest.mark.slow
def test_item12_a_user_with_two_accounts_of_3000_messages_ends_with_all_6000(google_settings, user):
    # The emulator's message ids are date plus load order: mailboxes generated for the same
    # minute share some ids, which one user's raw events (keyed per user) would merge.
    now = datetime.now(UTC)
    mailboxes = [
        generate_mailbox(email, messages=3000, events=0, seed=seed, days=30, now=at)
        for email, seed, at in ((FIRST, 31, now), (SECOND, 32, now - timedelta(minutes=1)))
    ]
    with GoogleEmulator(require_token=True) as emu:
        for email, generated in zip((FIRST, SECOND), mailboxes, strict=True):
            emu.add_mailbox(email, generated)
        google_settings.GOOGLE_API_ROOT = emu.url
        first, second = connect(emu, user, FIRST), connect(emu, user, SECOND)

        out = enqueue_sync("ada", "--provider", "gmail")
        assert "already active" not in out
        run_due_jobs(kinds=["gmail_sync"], until_empty=True)

    assert all(job.status == JobStatus.SUCCEEDED for job in Job.objects.filter(kind="gmail_sync"))
    assert (stored(first), stored(second)) == tuple(eligible(m) for m in mailboxes)
    assert stored(first) + stored(second) == sum(eligible(m) for m in mailboxes) > 5500


# -- item 13: the window start is clamped to now -------------------------------------------------


def test_item13_a_future_dated_stored_message_does_not_push_the_window_into_the_future(
    google_account, emulator
):
    RawEvent.objects.create(
        user_id=google_account.user_id,
        account=google_account,
        provider="gmail",
        source_id="from-a-takeout-with-a-bad-date",
        occurred_at=datetime.now(UTC) + timedelta(days=400),
        payload={"id": "from-a-takeout-with-a-bad-date"},
    )
    fresh = emulator.mailbox().add_message(
        make_message(
            from_="Dana Reyes <dana@northwind.example>",
            to=google_account.email,
            subject="Delivered a minute ago",
            date=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1),
        ).raw,
        label_ids=["INBOX"],
    )

    job = sync(google_account)

    assert job.status == JobStatus.SUCCEEDED and job.metrics["details"]["mode"] == "window"
    assert RawEvent.objects.filter(account=google_account, source_id=fresh).exists()


def test_item13_the_window_start_is_now_minus_the_overlap_at_the_latest(google_account):
    now = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    RawEvent.objects.create(
        user_id=google_account.user_id,
        account=google_account,
        provider="gmail",
        source_id="future",
        occurred_at=now + timedelta(days=3),
        payload={},
    )

    start = gmail_window_start(
        user_id=google_account.user_id, account_id=google_account.pk, now=now
    )

    assert start == now - timedelta(seconds=300)


# -- item 17: a token that opens someone else's mailbox ------------------------------------------


@pytest.mark.parametrize("kind", ["gmail_sync", "calendar_sync"])
def test_item17_a_token_that_opens_another_mailbox_fails_permanently_storing_nothing(
    two_account_emulator, user, kind
):
    # The account says FIRST, but its token was issued for SECOND's mailbox.
    wrong = connect(two_account_emulator, user, FIRST, token_for=SECOND)

    job = sync(wrong, kind)

    assert job.status == JobStatus.FAILED and job.attempts == 1
    assert SECOND in job.last_error and "nothing was stored" in job.last_error
    assert not RawEvent.objects.exists()
    assert not SyncState.objects.exclude(cursor="", pass_cursor="", pending_ids=[]).exists()
    assert not SyncState.objects.filter(last_synced_at__isnull=False).exists()


@pytest.mark.parametrize("kind", ["gmail_sync", "calendar_sync"])
def test_item17_the_accounts_own_mailbox_passes_the_check_every_run(two_accounts, kind):
    first, _ = two_accounts

    assert sync(first, kind).status == JobStatus.SUCCEEDED
    assert sync(first, kind).status == JobStatus.SUCCEEDED
    assert stored(first, kind.removesuffix("_sync")) > 0


# -- item 16: send-as addresses are refreshed at each window pass --------------------------------


def test_item16_a_window_pass_refreshes_the_accounts_send_as_addresses(google_account, emulator):
    later_alias = "alex.sales@pipeline.example"
    emulator.mailbox().aliases = (*emulator.mailbox().aliases, later_alias)

    assert sync(google_account).metrics["details"]["mode"] == "window"

    google_account.refresh_from_db()
    assert later_alias in google_account.addresses
    assert emulator.log.count("gmail.users.settings.sendAs.list") == 1
    # A history increment does not read them again.
    sync(google_account)
    assert emulator.log.count("gmail.users.settings.sendAs.list") == 1


def test_item12_a_deletion_seen_in_one_account_never_marks_another_accounts_row(
    two_accounts, two_account_emulator
):
    first, second = two_accounts
    sync(second)
    # A row with the same Gmail id, stored for the first account (ids are per mailbox).
    row = RawEvent.objects.filter(account=second).first()
    RawEvent.objects.filter(pk=row.pk).update(account=first)
    two_account_emulator.mailbox(SECOND).delete_message(row.source_id)

    job = sync(second)

    assert job.metrics["details"]["mode"] == "history"
    row.refresh_from_db()
    assert "_deleted" not in row.payload and row.account_id == first.pk


@pytest.mark.parametrize("kind", ["gmail_sync", "calendar_sync"])
def test_item17_a_full_sync_with_a_wrong_token_leaves_the_cursors_alone(
    two_accounts, two_account_emulator, user, kind
):
    first, _ = two_accounts
    assert sync(first, kind).status == JobStatus.SUCCEEDED
    before = list(SyncState.objects.filter(account=first).values_list("resource_id", "cursor"))
    rows = RawEvent.objects.count()
    # The account is reconnected, but the consent came from the other mailbox.
    connect(two_account_emulator, user, FIRST, token_for=SECOND)

    job = sync(first, kind, full=True)

    assert job.status == JobStatus.FAILED and SECOND in job.last_error
    after = list(SyncState.objects.filter(account=first).values_list("resource_id", "cursor"))
    assert after == before and all(cursor for _, cursor in after)
    assert RawEvent.objects.count() == rows
