"""Item 19 (Calendar): events older than the window are backfilled to the horizon, in a chain of
their own at priority 5, after the window sync."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from jobs.enqueue import enqueue
from jobs.models import GoogleAccount, Job, JobStatus, RawEvent, SyncState
from jobs.runner import run_due_jobs, run_job
from tests.fixtures.calendar import meeting
from tests.fixtures.emulator import OWNER

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def sync_config(pipeline_config):
    pipeline_config(
        handoff="none",
        calendar_window_past_days=180,
        backfill_horizon_days=730,
        calendar_pause_s=0.0,
    )


def sync(account: GoogleAccount) -> Job:
    job = enqueue("calendar_sync", user=account.user_id, payload={"account_id": account.pk})
    run_job(job.pk)
    job.refresh_from_db()
    return job


def stored(account: GoogleAccount, event: dict) -> bool:
    return RawEvent.objects.filter(
        account=account, provider="calendar", source_id=f"{OWNER}/{event['id']}"
    ).exists()


def test_item19_calendar_events_older_than_the_window_are_backfilled_to_the_horizon(
    google_account, emulator
):
    mailbox = emulator.mailbox()
    recent = mailbox.add_event(OWNER, meeting("Last week", days=-7))
    older = mailbox.add_event(OWNER, meeting("Last spring", days=-200))
    ancient = mailbox.add_event(OWNER, meeting("Three years ago", days=-1000))
    now = timezone.now()

    first = sync(google_account)

    assert first.status == JobStatus.SUCCEEDED
    assert stored(google_account, recent)
    assert not stored(google_account, older) and not stored(google_account, ancient)
    backfill = Job.objects.get(kind="calendar_backfill")
    assert (
        backfill.priority == 5 and backfill.dedupe_key == f"calendar_backfill:{google_account.pk}"
    )

    run_due_jobs(kinds=["calendar_backfill"], until_empty=True)

    backfill.refresh_from_db()
    assert backfill.status == JobStatus.SUCCEEDED
    assert backfill.metrics["details"]["mode"] == "backfill"
    assert backfill.metrics["details"]["backfillDone"] is True
    assert backfill.metrics["details"]["listed"] == backfill.metrics["itemsFetched"] > 0
    reached = datetime.fromisoformat(backfill.metrics["details"]["oldestReached"])
    assert now - timedelta(days=730) <= reached < now - timedelta(days=180)
    assert stored(google_account, older) and not stored(google_account, ancient)
    horizon = now - timedelta(days=730)
    assert not RawEvent.objects.filter(
        provider="calendar", occurred_at__lt=horizon - timedelta(days=2)
    ).exists()
    progress = SyncState.objects.get(account=google_account, resource_id=f"backfill:{OWNER}")
    assert progress.backfill_done_at is not None and not progress.cursor
    assert abs(progress.backfill_until - horizon) < timedelta(minutes=1)
    # The window sync keeps its own syncToken, untouched by the backfill.
    assert SyncState.objects.get(account=google_account, resource_id=OWNER).cursor

    incremental = sync(google_account)
    assert incremental.status == JobStatus.SUCCEEDED
    assert Job.objects.filter(kind="calendar_backfill").count() == 1


def test_item19_a_raised_horizon_reopens_the_calendar_backfill(
    google_account, emulator, pipeline_config
):
    pipeline_config(backfill_horizon_days=365)
    mailbox = emulator.mailbox()
    older = mailbox.add_event(OWNER, meeting("Last spring", days=-200))
    middle = mailbox.add_event(OWNER, meeting("Two summers ago", days=-500))
    ancient = mailbox.add_event(OWNER, meeting("Three years ago", days=-1000))
    sync(google_account)
    run_due_jobs(kinds=["calendar_backfill"], until_empty=True)
    assert stored(google_account, older) and not stored(google_account, middle)

    pipeline_config(backfill_horizon_days=730)
    sync(google_account)
    run_due_jobs(kinds=["calendar_backfill"], until_empty=True)

    assert stored(google_account, middle) and not stored(google_account, ancient)
    assert Job.objects.filter(kind="calendar_backfill", status=JobStatus.SUCCEEDED).count() == 2
    progress = SyncState.objects.get(account=google_account, resource_id=f"backfill:{OWNER}")
    assert progress.backfill_done_at is not None


def test_item15_item19_a_calendar_whose_backfill_fails_waits_for_its_retry(
    google_account, emulator
):
    older = emulator.mailbox().add_event(OWNER, meeting("Last spring", days=-200))
    sync(google_account)
    # The primary calendar's backfill listing answers 404 once.
    emulator.faults.add("calendar.events.list", 404, times=1)
    run_due_jobs(kinds=["calendar_backfill"], until_empty=True)

    progress = SyncState.objects.get(account=google_account, resource_id=f"backfill:{OWNER}")
    assert OWNER in progress.failures and progress.backfill_done_at is None
    assert not stored(google_account, older)
    # Not due: the next window sync starts no backfill run.
    sync(google_account)
    assert not Job.objects.filter(kind="calendar_backfill", status=JobStatus.QUEUED).exists()

    past = (timezone.now() - timedelta(seconds=1)).isoformat()
    progress.failures = {OWNER: {**progress.failures[OWNER], "retryAt": past}}
    progress.save()
    sync(google_account)
    run_due_jobs(kinds=["calendar_backfill"], until_empty=True)

    assert stored(google_account, older)
    progress.refresh_from_db()
    assert progress.failures == {} and progress.backfill_done_at is not None
