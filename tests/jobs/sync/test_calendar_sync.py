"""calendar_sync against the emulator: windows, syncTokens, 410 fallback, cap and continuation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobs.enqueue import enqueue
from jobs.models import GoogleAccount, Job, JobStatus, RawEvent, SyncState
from jobs.runner import run_due_jobs, run_job
from jobs.sync.calendar import event_start, selected_calendars
from tests.fixtures.calendar import meeting
from tests.fixtures.emulator import OWNER

pytestmark = pytest.mark.django_db

SHARED = "c_839511c777138af419bf@group.calendar.google.com"


@pytest.fixture(autouse=True)
def sync_config(pipeline_config):
    # The fixture calendars lie around March 2025: a window wide enough to hold them, no pauses.
    pipeline_config(handoff="none", calendar_window_past_days=3650, calendar_pause_s=0.0)


def sync(account: GoogleAccount, **payload: object) -> Job:
    job = enqueue(
        "calendar_sync", user=account.user_id, payload={"account_id": account.pk, **payload}
    )
    run_job(job.pk)
    job.refresh_from_db()
    return job


def events(account: GoogleAccount, calendar: str | None = None):
    rows = RawEvent.objects.filter(user_id=account.user_id, provider="calendar")
    return rows.filter(source_id__startswith=f"{calendar}/") if calendar else rows


def test_a_first_sync_stores_every_calendar_with_its_id_in_the_payload(google_account, emulator):
    job = sync(google_account)

    assert job.status == JobStatus.SUCCEEDED
    assert job.metrics["itemsInserted"] == events(google_account).count() > 0
    assert job.metrics["details"]["calendars"] == 2
    for calendar in (OWNER, SHARED):
        rows = events(google_account, calendar)
        assert rows.exists()
        assert all(row.payload["_calendarId"] == calendar for row in rows)
        assert all(row.source_id == f"{calendar}/{row.payload['id']}" for row in rows)
    states = SyncState.objects.filter(account=google_account, provider="calendar")
    assert {s.resource_id for s in states} == {OWNER, SHARED}
    assert all(s.cursor and not s.page_token and s.last_full_sync_at for s in states)


def test_rerunning_a_sync_inserts_nothing(google_account):
    first = sync(google_account)

    incremental = sync(google_account)
    full = sync(google_account, full=True)

    assert incremental.metrics["itemsInserted"] == incremental.metrics["itemsFetched"] == 0
    assert full.metrics["itemsInserted"] == 0
    assert full.metrics["itemsFetched"] == first.metrics["itemsFetched"]
    assert full.metrics["itemsSkipped"] == full.metrics["itemsFetched"]


def test_an_incremental_run_stores_new_changed_and_cancelled_events(google_account, emulator):
    sync(google_account)
    mailbox = emulator.mailbox()
    # Two single events (an instance of a recurring one is not an event the store can edit).
    moved, dropped = (
        events(google_account, OWNER)
        .exclude(payload__status="cancelled")
        .exclude(payload__has_key="recurringEventId")
        .order_by("id")[:2]
    )
    mailbox.add_event(OWNER, meeting("Kick-off with Northwind"))
    mailbox.update_event(OWNER, moved.payload["id"], {"location": "Room 4"})
    mailbox.cancel_event(OWNER, dropped.payload["id"])
    emulator.log.reset()

    job = sync(google_account)

    assert (job.metrics["itemsInserted"], job.metrics["details"]["itemsUpdated"]) == (1, 2)
    assert emulator.log.count("calendar.events.list") == 2  # one per calendar, by syncToken
    moved.refresh_from_db()
    dropped.refresh_from_db()
    assert moved.payload["location"] == "Room 4" and moved.status == "pending"
    # The cancellation stub is merged: the meeting keeps its details, marked cancelled.
    assert dropped.payload["status"] == "cancelled"
    assert dropped.payload["summary"] and dropped.payload["_calendarId"] == OWNER
    assert dropped.occurred_at is not None


def test_an_expired_sync_token_falls_back_to_the_window(google_account, emulator):
    sync(google_account)
    mailbox = emulator.mailbox()
    mailbox.add_event(SHARED, meeting("Added while the token expired"))
    mailbox.expire_sync_tokens(SHARED)

    job = sync(google_account)

    assert job.metrics["itemsInserted"] == 1
    assert job.metrics["details"]["windowFallbacks"] == 1
    assert events(google_account, SHARED).filter(payload__summary__startswith="Added").exists()
    assert sync(google_account).metrics["itemsFetched"] == 0  # a fresh syncToken works again


def test_the_per_run_cap_continues_until_every_event_is_stored_once(
    google_account, pipeline_config
):
    pipeline_config(calendar_max_events_per_run=15)

    first = sync(google_account)
    run_due_jobs(kinds=["calendar_sync"], until_empty=True)

    runs = list(Job.objects.filter(kind="calendar_sync").order_by("id"))
    assert first.metrics["itemsFetched"] == 15 and first.metrics["details"]["continues"]
    assert len(runs) > 2 and all(job.status == JobStatus.SUCCEEDED for job in runs)
    assert all(job.payload["full"] is False for job in runs)
    total = events(google_account).count()
    assert sum(job.metrics["itemsFetched"] for job in runs) == total
    assert sum(job.metrics["itemsInserted"] for job in runs) == total


def test_a_deadline_stops_between_pages_and_the_continuation_resumes(
    google_account, emulator, pipeline_config, monkeypatch
):
    # Slow, small pages, so the deadline falls between two of them.
    pipeline_config(job_wall_clock_cap_s=0.3)
    emulator.faults.add_delay("calendar.events.list", 0.1)
    monkeypatch.setattr("jobs.sync.calendar.EVENTS_PAGE_SIZE", 10)

    first = sync(google_account)
    run_due_jobs(kinds=["calendar_sync"], until_empty=True)

    runs = list(Job.objects.filter(kind="calendar_sync").order_by("id"))
    assert first.metrics["timedOut"] is True and len(runs) > 1
    assert all(job.status == JobStatus.SUCCEEDED for job in runs)
    total = events(google_account).count()
    assert sum(job.metrics["itemsFetched"] for job in runs) == total
    assert sum(job.metrics["itemsInserted"] for job in runs) == total


def test_the_selection_picks_primary_or_named_calendars():
    entries = [{"id": OWNER, "primary": True}, {"id": SHARED}, {"id": "holidays"}]
    assert selected_calendars(entries, "all") == [OWNER, SHARED, "holidays"]
    assert selected_calendars(entries, "primary") == [OWNER]
    assert selected_calendars(entries, f"primary, {SHARED}") == [OWNER, SHARED]
    assert selected_calendars(entries, "holidays") == ["holidays"]


def test_only_the_selected_calendars_are_synced(google_account, pipeline_config):
    pipeline_config(calendar_selection="primary")

    sync(google_account)

    assert events(google_account, OWNER).exists()
    assert not events(google_account, SHARED).exists()


def test_event_start_reads_times_dates_and_original_starts():
    assert event_start({"start": {"dateTime": "2025-03-01T09:00:00-05:00"}}) == datetime(
        2025, 3, 1, 14, tzinfo=UTC
    )
    assert event_start({"start": {"date": "2025-03-02"}}) == datetime(2025, 3, 2, tzinfo=UTC)
    assert event_start(
        {"status": "cancelled", "originalStartTime": {"dateTime": "2025-03-03T10:00:00Z"}}
    ) == datetime(2025, 3, 3, 10, tzinfo=UTC)
    assert event_start({"id": "x", "status": "cancelled"}) is None


def test_a_page_token_google_no_longer_takes_restarts_the_calendar(google_account, pipeline_config):
    pipeline_config(calendar_max_events_per_run=10)
    sync(google_account)
    SyncState.objects.filter(account=google_account).exclude(page_token="").update(
        page_token="stale-token"
    )

    run_due_jobs(kinds=["calendar_sync"], until_empty=True)

    runs = Job.objects.filter(kind="calendar_sync")
    assert all(job.status == JobStatus.SUCCEEDED for job in runs)
    assert all(s.cursor for s in SyncState.objects.filter(account=google_account))


def test_an_all_day_event_starts_at_local_midnight_of_its_calendars_zone(google_account, emulator):
    from jobs.models import Interaction
    from jobs.normalization.services import raw_events_normalize

    day = (datetime.now(UTC) + timedelta(days=5)).date()
    emulator.mailbox(OWNER).add_calendar("tokyo-team", "Tokyo team", time_zone="Asia/Tokyo")
    emulator.mailbox(OWNER).add_event(
        "tokyo-team",
        {
            "id": "offsite1",
            "summary": "Offsite",
            "start": {"date": day.isoformat()},
            "end": {"date": (day + timedelta(days=1)).isoformat()},
        },
    )
    sync(google_account)
    row = events(google_account, "tokyo-team").get()
    assert row.payload["_calendarTimeZone"] == "Asia/Tokyo"
    raw_events_normalize(user_id=google_account.user_id, provider="calendar")
    offsite = Interaction.objects.get(user_id=google_account.user_id, source_id=row.source_id)
    # midnight in Tokyo is 15:00 UTC the day before
    assert offsite.occurred_at == datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(
        hours=9
    )
    assert offsite.metadata["all_day"] is True
