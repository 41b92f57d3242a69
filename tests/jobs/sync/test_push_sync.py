"""Push-triggered sync against the emulator: watches and channels made, renewed before they
expire and stopped at disconnect; notifications coalesce into one run plus at most one
follow-up; push health and the polling safety net."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from urllib.parse import unquote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from google_emulator.generator import make_message
from jobs.errors import TransientError
from jobs.google.accounts import google_account_connect, google_account_disconnect
from jobs.google.push import push_health
from jobs.models import GoogleAccount, Job, JobStatus, PushChannel, RawEvent, SyncState
from jobs.runner import claim, run_due_jobs, run_job
from jobs.sync.enqueue import sync_enqueue
from jobs.sync.periodic import periodic_sync
from jobs.sync.push import (
    PushBusy,
    push_calendar_notified,
    push_gmail_notified,
    push_reconcile,
    push_renew_due,
)
from tests.fixtures.accounts import CALENDAR_READONLY, GMAIL_READONLY
from tests.fixtures.emulator import OWNER
from tests.fixtures.push import TOPIC
from tests.fixtures.sync import sync

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("push_settings", "wide_sync_config")]

SHARED = "c_839511c777138af419bf@group.calendar.google.com"


def new_mail(emulator, subject: str) -> str:
    message = make_message(from_="sam@client.example", to=OWNER, subject=subject)
    return emulator.mailbox().add_message(message.raw, label_ids=message.label_ids)


def rows(account: GoogleAccount, provider: str) -> list[PushChannel]:
    return list(PushChannel.objects.filter(account=account, provider=provider).order_by("pk"))


def gmail_syncs() -> list[Job]:
    return list(Job.objects.filter(kind="gmail_sync").order_by("pk"))


# -- Watches and channels -----------------------------------------------------------------------


def test_reconcile_watches_the_mailbox_and_opens_a_channel_per_calendar(google_account, emulator):
    result = push_reconcile(account=google_account)

    assert result.gmail == "watched" and result.channels_opened == 2 and not result.failures
    assert emulator.push.watch_calls == [{"email": OWNER, "topic": TOPIC, "labelIds": []}]
    (watch,) = rows(google_account, "gmail")
    assert watch.status == "active" and watch.address == TOPIC
    assert watch.expires_at > timezone.now() + timedelta(days=6)
    assert watch.history_id == emulator.mailbox().history_id
    channels = rows(google_account, "calendar")
    assert {row.resource_id for row in channels} == {OWNER, SHARED}
    assert all(row.status == "active" and row.google_resource_id for row in channels)
    assert {c.id for c in emulator.push.channels()} == {row.channel_id for row in channels}

    # Nothing is due: a second run calls nothing but the calendar list.
    calls = len(emulator.push.watch_calls), len(emulator.push.channel_calls)
    again = push_reconcile(account=google_account)
    assert again.gmail == "" and again.channels_opened == 0
    assert (len(emulator.push.watch_calls), len(emulator.push.channel_calls)) == calls


def test_the_label_filter_goes_to_the_watch(google_account, emulator, pipeline_config):
    pipeline_config(push_gmail_label_ids=["INBOX", "SENT"])

    push_reconcile(account=google_account)

    assert emulator.push.watch_calls[0]["labelIds"] == ["INBOX", "SENT"]
    assert emulator.push.watch_of(OWNER).label_ids == ("INBOX", "SENT")


def test_watch_and_channels_are_renewed_before_they_expire(google_account, emulator):
    # Google hands out a watch and channels that end within the renewal margin (2 days).
    emulator.push.gmail_watch_ttl_s = 3600
    push_reconcile(account=google_account)
    (watch,) = rows(google_account, "gmail")
    old_channels = {row.channel_id for row in rows(google_account, "calendar")}
    PushChannel.objects.filter(provider="calendar").update(
        expires_at=timezone.now() + timedelta(hours=1)
    )

    assert push_renew_due() == 1
    run_due_jobs(kinds=["push_renew"], until_empty=True)

    renewed = Job.objects.get(kind="push_renew")
    assert renewed.status == JobStatus.SUCCEEDED
    # Renewed while the old ones were still live: no gap.
    assert len(emulator.push.watch_calls) == 2
    (after,) = rows(google_account, "gmail")
    assert after.renewed_at > watch.renewed_at and after.renewed_at < watch.expires_at
    channels = rows(google_account, "calendar")
    assert len(channels) == 2 and not old_channels & {row.channel_id for row in channels}
    assert set(emulator.push.channel_stops) == old_channels
    assert {c.id for c in emulator.push.channels()} == {row.channel_id for row in channels}
    assert all(row.expires_at > timezone.now() + timedelta(days=6) for row in channels)


def test_a_watch_is_renewed_daily_even_far_from_its_expiry(google_account, emulator):
    push_reconcile(account=google_account)
    assert push_renew_due() == 0

    PushChannel.objects.filter(provider="gmail").update(
        renewed_at=timezone.now() - timedelta(hours=25)
    )
    assert push_renew_due() == 1
    run_due_jobs(kinds=["push_renew"], until_empty=True)

    assert len(emulator.push.watch_calls) == 2
    assert len(emulator.push.channel_calls) == 2  # the channels were not due


def test_disconnect_stops_the_watch_and_every_channel(google_account, emulator):
    push_reconcile(account=google_account)
    channels = {row.channel_id for row in rows(google_account, "calendar")}

    google_account_disconnect(account=google_account)

    assert emulator.push.stop_calls == [OWNER]
    assert set(emulator.push.channel_stops) == channels
    assert emulator.push.watch_of(OWNER) is None and not emulator.push.channels()
    assert not PushChannel.objects.exists()


def test_one_mailbox_in_two_users_keeps_its_watch_until_the_last_one_leaves(
    google_account, emulator, other_user
):
    second = google_account_connect(
        user=other_user,
        email=OWNER,
        refresh_token=emulator.register_account(OWNER),
        scopes=[GMAIL_READONLY, CALENDAR_READONLY],
    )
    push_reconcile(account=google_account)
    push_reconcile(account=second)
    theirs = {row.channel_id for row in rows(second, "calendar")}
    mine = {row.channel_id for row in rows(google_account, "calendar")}

    google_account_disconnect(account=google_account)

    # Google keeps one watch per mailbox: stopping it would silence the other user's push.
    assert emulator.push.stop_calls == []
    assert emulator.push.watch_of(OWNER) is not None
    assert set(emulator.push.channel_stops) == mine
    assert {c.id for c in emulator.push.channels()} == theirs
    assert len(rows(second, "gmail")) == 1

    google_account_disconnect(account=second)
    assert emulator.push.stop_calls == [OWNER]


def test_two_accounts_of_one_user_each_get_their_own_watch_and_channels(
    google_account, emulator, user
):
    second_address = "ada.work@pipeline.example"
    second = google_account_connect(
        user=user,
        email=second_address,
        refresh_token=emulator.register_account(second_address),
        scopes=[GMAIL_READONLY, CALENDAR_READONLY],
    )

    assert push_renew_due() == 2
    run_due_jobs(kinds=["push_renew"], until_empty=True)

    assert sorted(call["email"] for call in emulator.push.watch_calls) == sorted(
        [OWNER, second_address]
    )
    assert {row.resource_id for row in rows(second, "calendar")} == {second_address}
    assert len(rows(google_account, "calendar")) == 2
    outcomes = push_gmail_notified(email=second_address, history_id=10**6)
    assert [(o.account_id, o.outcome) for o in outcomes] == [(second.pk, "enqueued")]


def test_push_turned_off_stops_what_is_left(google_account, emulator, pipeline_config):
    push_reconcile(account=google_account)
    pipeline_config(push_gmail_topic="", push_calendar_address="")

    assert push_renew_due() == 1
    run_due_jobs(kinds=["push_renew"], until_empty=True)

    assert emulator.push.stop_calls == [OWNER] and len(emulator.push.channel_stops) == 2
    assert not PushChannel.objects.exists()
    assert push_renew_due() == 0


def test_a_refused_watch_is_recorded_and_push_counts_as_failing(
    google_account, emulator, pipeline_config
):
    pipeline_config(push_gmail_topic="projects/crm-test/topics/missing")

    result = push_reconcile(account=google_account)

    assert result.gmail == "" and "users.watch" in result.failures[0]
    (watch,) = rows(google_account, "gmail")
    assert watch.status == "failed" and "not authorized" in watch.last_error
    health = push_health(accounts=[google_account])[google_account.pk]
    assert health["gmail"].state == "failing" and "not authorized" in health["gmail"].reason
    assert health["calendar"].healthy  # the channels opened all the same
    assert push_renew_due() == 1  # retried by the schedule


def test_a_transient_failure_retries_the_renewal_job(google_account, emulator):
    emulator.faults.add_spec("calendar.events.watch=503x20")

    job = Job.objects.get(pk=_renew(google_account))

    assert job.status == JobStatus.RETRYING and "503" in job.last_error
    # The failed attempt still reports what it did.
    assert job.metrics["details"]["gmail"] == "watched" and job.metrics["itemsInserted"] == 1
    assert rows(google_account, "gmail")[0].status == "active"  # done, not done again
    emulator.faults.clear()
    Job.objects.filter(pk=job.pk).update(run_after=timezone.now())
    run_job(job.pk)
    assert {row.status for row in rows(google_account, "calendar")} == {"active"}
    assert len(emulator.push.watch_calls) == 1


def _renew(account: GoogleAccount) -> int:
    from jobs.sync.push import push_renew_enqueue

    job = push_renew_enqueue(account=account)
    assert job is not None
    run_job(job.pk)
    return job.pk


def test_transient_errors_propagate_from_reconcile(google_account, emulator):
    emulator.faults.add_spec("gmail.users.watch=503x20")
    with pytest.raises(TransientError):
        push_reconcile(account=google_account)


# -- Notifications into syncs -------------------------------------------------------------------


@pytest.fixture
def synced(google_account, emulator) -> GoogleAccount:
    """Push on, and the first syncs done (the account has its cursors)."""
    push_reconcile(account=google_account)
    assert sync(google_account).status == JobStatus.SUCCEEDED
    assert sync(google_account, "calendar_sync").status == JobStatus.SUCCEEDED
    Job.objects.all().delete()
    return google_account


def run_in_thread(job_id: int) -> threading.Thread:
    def work() -> None:
        try:
            run_job(job_id)
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def wait_for(predicate, what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.django_db(transaction=True)
def test_notifications_during_a_running_sync_lead_to_exactly_one_follow_up(synced, emulator):
    first = new_mail(emulator, "first")
    (enqueued,) = push_gmail_notified(email=OWNER, history_id=emulator.mailbox().history_id)
    assert enqueued.outcome == "enqueued"
    # The run's fetch waits a while: mail that arrives meanwhile is past what it read.
    emulator.faults.add_spec("batch=delayx1:seconds=1.5")
    histories = emulator.log.count("gmail.users.history.list")
    worker = run_in_thread(enqueued.job_id)
    wait_for(lambda: emulator.log.count("gmail.users.history.list") > histories, "history read")
    second = new_mail(emulator, "second")
    outcomes = [
        push_gmail_notified(email=OWNER, history_id=emulator.mailbox().history_id)[0].outcome
        for _ in range(50)
    ]
    worker.join(30)

    # While it runs, each flags the follow-up; once it has ended, they coalesce into that one.
    assert outcomes[0] == "follow-up" and set(outcomes) <= {"follow-up", "coalesced"}
    runs = gmail_syncs()
    assert len(runs) == 2
    job, follow_up = runs
    assert job.status == JobStatus.SUCCEEDED and job.metrics["details"]["pushFollowUp"]
    assert follow_up.parent_id == job.pk and follow_up.batch_id != job.batch_id
    run_job(follow_up.pk)
    stored = set(RawEvent.objects.values_list("source_id", flat=True))
    assert {first, second} <= stored
    # The follow-up found nothing more to follow: the chain ends there.
    assert len(gmail_syncs()) == 2
    (watch,) = rows(synced, "gmail")
    assert not watch.follow_up and watch.checked_job_id == follow_up.pk


@pytest.mark.django_db(transaction=True)
def test_notifications_a_running_sync_covers_start_nothing_more(synced, emulator):
    new_mail(emulator, "only")
    covered = emulator.mailbox().history_id
    (enqueued,) = push_gmail_notified(email=OWNER, history_id=covered)
    emulator.faults.add_spec("batch=delayx1:seconds=1")
    histories = emulator.log.count("gmail.users.history.list")
    worker = run_in_thread(enqueued.job_id)
    wait_for(lambda: emulator.log.count("gmail.users.history.list") > histories, "history read")
    outcomes = {push_gmail_notified(email=OWNER, history_id=covered)[0].outcome for _ in range(10)}
    worker.join(30)

    assert outcomes == {"follow-up"}  # flagged: the run decides at its end
    assert len(gmail_syncs()) == 1  # and it read past every notified change


def test_a_queued_sync_absorbs_a_burst(synced, emulator):
    new_mail(emulator, "burst")
    history_id = emulator.mailbox().history_id
    outcomes = [push_gmail_notified(email=OWNER, history_id=history_id)[0] for _ in range(100)]

    assert outcomes[0].outcome == "enqueued"
    assert {o.outcome for o in outcomes[1:]} == {"coalesced"}
    assert {o.job_id for o in outcomes} == {outcomes[0].job_id}
    (watch,) = rows(synced, "gmail")
    assert watch.notifications == 100 and watch.notified_history_id == history_id


def test_a_notification_after_the_run_looked_is_answered_busy_at_once(synced, emulator):
    new_mail(emulator, "late")
    (enqueued,) = push_gmail_notified(email=OWNER, history_id=emulator.mailbox().history_id)
    job = Job.objects.get(pk=enqueued.job_id)
    # The run is at its very end: it has looked for notifications, its outcome is not written.
    running = claim(job.pk, "host:1", config=__import__("jobs.config").config.get_config())
    assert running is not None
    PushChannel.objects.filter(provider="gmail").update(
        checked_job_id=running.pk, checked_attempt=running.attempts
    )
    # The request does not wait for the run (no polling of its job row): Google redelivers.
    with CaptureQueriesContext(connection) as queries, pytest.raises(PushBusy):
        push_gmail_notified(email=OWNER, history_id=emulator.mailbox().history_id + 1)
    polls = [q for q in queries.captured_queries if 'FROM "jobs_job"' in q["sql"]]
    assert len(polls) <= 1, polls

    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    (after,) = push_gmail_notified(email=OWNER, history_id=emulator.mailbox().history_id + 1)
    assert after.outcome == "enqueued" and after.job_id != job.pk


def test_a_forged_huge_history_id_does_not_silence_unannounced_changes(synced, emulator):
    # A notified historyId far past anything Gmail has: it must not stick past the sync.
    (enqueued,) = push_gmail_notified(email=OWNER, history_id=10**15)
    assert enqueued.outcome == "enqueued"
    run_job(enqueued.job_id)
    (watch,) = rows(synced, "gmail")
    cursor = SyncState.objects.get(account=synced, provider="gmail", resource_id="").cursor
    assert watch.notified_history_id is not None and watch.notified_history_id <= int(cursor)

    # Mail no notification announces is still noticed by the next poll.
    new_mail(emulator, "unannounced after the forgery")
    assert sync(synced).status == JobStatus.SUCCEEDED
    (watch,) = rows(synced, "gmail")
    assert watch.unannounced_at is not None


def test_a_calendar_notification_narrows_the_sync_and_a_poll_widens_it(synced, emulator):
    channels = {row.resource_id: row for row in rows(synced, "calendar")}

    first = push_calendar_notified(channel=channels[OWNER])
    second = push_calendar_notified(channel=channels[SHARED])
    job = Job.objects.get(kind="calendar_sync")
    assert (first.outcome, second.outcome) == ("enqueued", "coalesced")
    assert job.payload["calendar_ids"] == sorted([OWNER, SHARED])

    Job.objects.filter(pk=job.pk).update(payload={**job.payload, "calendar_ids": [OWNER]})
    sync_enqueue(accounts=[synced], providers=["calendar"])
    job.refresh_from_db()
    assert job.payload["calendar_ids"] == []


def test_a_narrowed_calendar_sync_lists_only_its_calendar(synced, emulator):
    emulator.mailbox().add_event(
        SHARED,
        {"summary": "Team", "start": {"date": "2026-02-02"}, "end": {"date": "2026-02-03"}},
    )
    (channel,) = [row for row in rows(synced, "calendar") if row.resource_id == SHARED]
    push_calendar_notified(channel=channel)
    before = len(emulator.log.paths())

    run_due_jobs(kinds=["calendar_sync"], until_empty=True)

    listed = [unquote(p) for p in emulator.log.paths()[before:] if p.endswith("/events")]
    assert listed == [f"/calendar/v3/calendars/{SHARED}/events"]
    assert RawEvent.objects.filter(payload__summary="Team").exists()


# -- Health and the safety net ------------------------------------------------------------------


def test_a_healthy_account_is_polled_only_as_a_safety_net(synced, emulator, pipeline_config):
    pipeline_config(push_poll_minutes=60)
    SyncState.objects.filter(account=synced).update(last_synced_at=timezone.now())
    health = push_health(accounts=[synced])[synced.pk]
    assert health["gmail"].healthy and health["calendar"].healthy

    assert periodic_sync() == 0

    SyncState.objects.filter(account=synced).update(
        last_synced_at=timezone.now() - timedelta(minutes=55)
    )
    assert periodic_sync() == 2


def test_an_account_whose_push_fails_is_polled_at_the_normal_interval(synced, emulator):
    SyncState.objects.filter(account=synced).update(last_synced_at=timezone.now())
    PushChannel.objects.filter(provider="gmail").update(expires_at=timezone.now())

    assert periodic_sync() == 1
    assert Job.objects.get().kind == "gmail_sync"


def test_mail_push_never_announced_turns_push_failing(synced, emulator, pipeline_config):
    # Nothing subscribes to the topic: Gmail publishes, nobody is told (push is down).
    new_mail(emulator, "unannounced")
    job = sync(synced)
    assert job.status == JobStatus.SUCCEEDED
    (watch,) = rows(synced, "gmail")
    assert watch.unannounced_at is not None
    assert push_health(accounts=[synced])[synced.pk]["gmail"].healthy  # within the grace

    pipeline_config(push_missed_grace_s=0)
    health = push_health(accounts=[synced])[synced.pk]["gmail"]
    assert health.state == "failing" and "no notification announced" in health.reason

    # A notification that covers it: push works again.
    push_gmail_notified(email=OWNER, history_id=emulator.mailbox().history_id)
    assert push_health(accounts=[synced])[synced.pk]["gmail"].healthy


def test_a_calendar_change_no_channel_announced_is_noticed(synced, emulator, pipeline_config):
    pipeline_config(push_missed_grace_s=0)
    emulator.mailbox().add_event(
        OWNER, {"summary": "Quiet", "start": {"date": "2026-03-02"}, "end": {"date": "2026-03-03"}}
    )

    assert sync(synced, "calendar_sync").status == JobStatus.SUCCEEDED

    health = push_health(accounts=[synced])[synced.pk]["calendar"]
    assert health.state == "failing" and "no notification announced" in health.reason


def test_push_off_changes_nothing_for_polling(google_account, pipeline_config):
    pipeline_config(push_gmail_topic="", push_calendar_address="")
    SyncState.objects.create(
        user_id=google_account.user_id,
        account=google_account,
        provider="gmail",
        last_synced_at=timezone.now(),
    )

    health = push_health(accounts=[google_account])[google_account.pk]
    assert health["gmail"].state == health["calendar"].state == "off"
    assert periodic_sync() == 2
    assert push_renew_due() == 0
