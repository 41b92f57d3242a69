"""A Calendar sync (and backfill) out of quota hands its worker back when other jobs wait for one.

As for Gmail (tests/jobs/sync/test_quota_yield.py): a quota wait longer than quota_yield_after_s
while another job is due stops the run before the call, with every page stored so far kept and
each calendar's page token / syncToken saved, and the chain continues in a new job due when the
quota frees, without spending an attempt. The emulator enforces the same limits as the pacer:
no call may be answered 429.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from google_emulator.client import build_service
from google_emulator.quota import QuotaLimits, QuotaMeter
from google_emulator.server import GoogleEmulator
from jobs.config import get_config
from jobs.enqueue import enqueue
from jobs.google import pacer
from jobs.models import GoogleAccount, Job, JobStatus, RawEvent, SyncState
from jobs.runner import run_due_jobs, run_job
from jobs.sync.calendar import BACKFILL_PREFIX
from jobs.sync.windows import CalendarWindow, backfill_horizon, calendar_window
from tests.fixtures.calendar import meeting
from tests.fixtures.emulator import OWNER
from tests.fixtures.sync import sync

pytestmark = pytest.mark.django_db

SHARED = "c_839511c777138af419bf@group.calendar.google.com"
WINDOW_S = 8.0  # the emulator's window (Google's minute, shortened)
# The pacer counts over a longer window, as the product's default does (62 s against Google's
# 60): a call is counted by the emulator a little after the pacer reserved it, and an earlier
# call that took longer to arrive (the first one builds its client) must not still be in the
# emulator's window when the pacer lets a later one go.
PACER_WINDOW_S = WINDOW_S + 2.0
# Calendar requests per user per window, at the pacer and at the emulator.
LIMIT = 3
PAGE = 250


@pytest.fixture(autouse=True)
def paced(pipeline_config, emulator: GoogleEmulator):
    pipeline_config(
        handoff="none",
        calendar_window_past_days=3650,
        calendar_pause_s=0.0,
        calendar_requests_per_user_per_minute=LIMIT,
        quota_window_s=PACER_WINDOW_S,
        quota_burst_window_s=0.0,
        google_retry_after_cap_s=30.0,
        quota_yield_after_s=1.0,
    )
    emulator.quota = QuotaMeter(QuotaLimits(calendar_requests_per_user=LIMIT, window_s=WINDOW_S))


def listed(emulator: GoogleEmulator, calendar_id: str, **window: str) -> set[str]:
    """The source ids a sync of `calendar_id` must store: the emulator's own events.list over
    `window` (showDeleted, singleEvents), read with its quota and token checks set aside."""
    meter, emulator.quota = emulator.quota, QuotaMeter(None)
    required, emulator.require_token = emulator.require_token, False
    service = build_service("calendar", "v3", emulator.url, timeout=5)
    try:
        found: set[str] = set()
        token = None
        while True:
            page = (
                service.events()
                .list(
                    calendarId=calendar_id,
                    showDeleted=True,
                    singleEvents=True,
                    maxResults=PAGE,
                    pageToken=token,
                    **window,
                )
                .execute()
            )
            found |= {f"{calendar_id}/{event['id']}" for event in page.get("items", [])}
            token = page.get("nextPageToken")
            if not token:
                return found
    finally:
        service.close()
        emulator.quota, emulator.require_token = meter, required


def stored(account: GoogleAccount, calendar_id: str | None = None) -> set[str]:
    rows = RawEvent.objects.filter(user_id=account.user_id, provider="calendar")
    if calendar_id is not None:
        rows = rows.filter(source_id__startswith=f"{calendar_id}/")
    return set(rows.values_list("source_id", flat=True))


def state(account: GoogleAccount, resource_id: str) -> SyncState:
    return SyncState.objects.get(account=account, provider="calendar", resource_id=resource_id)


def chain(account: GoogleAccount, kind: str = "calendar_sync"):
    return Job.objects.filter(user_id=account.user_id, kind=kind).order_by("id")


def run_chain(account: GoogleAccount, kind: str = "calendar_sync") -> None:
    """Run the chain's jobs as they fall due until none is left."""
    deadline = time.monotonic() + 4 * WINDOW_S
    while chain(account, kind).filter(status=JobStatus.QUEUED).exists():
        assert time.monotonic() < deadline, "the chain did not finish"
        run_due_jobs(kinds=[kind], until_empty=True)
        time.sleep(0.2)


def test_a_calendar_sync_out_of_quota_yields_mid_calendar_and_resumes_at_its_page_token(
    google_account, emulator, other_user
):
    # The primary calendar gets three pages: calendarList and its first two pages use the
    # window's three requests; the third page must wait for the window (~8 s).
    mailbox = emulator.mailbox()
    for i in range(2 * PAGE + 20):
        mailbox.add_event(OWNER, meeting(f"Standup {i}", days=1 + i % 60, attendees=[]))
    waiting = enqueue("selfcheck", user=other_user)  # due, waiting for a worker
    emulator.log.reset()

    started = time.monotonic()
    job = sync(google_account, "calendar_sync")
    took = time.monotonic() - started

    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    assert took < WINDOW_S / 2, f"the run slept {took:.1f}s in the pacer instead of yielding"
    assert job.metrics["details"]["continues"] is True
    assert 1.0 < job.metrics["details"]["quotaDeferredS"] <= PACER_WINDOW_S
    assert job.metrics["details"]["requests"] == LIMIT
    # What was stored stays stored, and the calendar's listing points past it.
    assert len(stored(google_account, OWNER)) == job.metrics["itemsFetched"] == 2 * PAGE
    assert stored(google_account, SHARED) == set()
    primary = state(google_account, OWNER)
    assert primary.page_token and primary.pass_query and not primary.cursor
    follow = Job.objects.get(parent=job)
    assert follow.kind == "calendar_sync" and follow.status == JobStatus.QUEUED
    assert follow.payload["calendar_ids"] == [OWNER, SHARED]  # both unfinished
    # due when the quota frees, not at once (it would only wait in the pacer again)
    assert follow.run_after > timezone.now() + timedelta(seconds=1)
    assert Job.objects.get(pk=waiting.pk).status == JobStatus.QUEUED

    run_due_jobs(kinds=["selfcheck"])
    run_chain(google_account)

    assert emulator.log.count("calendar.events.list") == 4  # three pages + the shared calendar
    assert emulator.log.count("calendar.calendarList.list") == 2
    # Every event once: the third page was listed from the saved page token, not page one again.
    window = calendar_window(config=get_config()).params()
    assert stored(google_account, OWNER) == listed(emulator, OWNER, **window)
    assert stored(google_account, SHARED) == listed(emulator, SHARED, **window)
    jobs = list(chain(google_account))
    assert len(jobs) == 2
    assert {(j.status, j.attempts) for j in jobs} == {(JobStatus.SUCCEEDED, 1)}
    assert sum(j.metrics["itemsFetched"] for j in jobs) == len(stored(google_account))
    assert emulator.quota_rejections == 0
    for calendar_id in (OWNER, SHARED):
        done = state(google_account, calendar_id)
        assert done.cursor and not done.page_token and not done.pass_query


def test_a_sync_yields_between_calendars_and_continues_with_the_next(
    google_account, emulator, other_user
):
    # Four requests: calendarList, the primary calendar, then the shared one waits (limit 2).
    # The fixture's limit is 3: one spent now (at the pacer and the emulator) leaves two.
    pacer.take(OWNER, 1, api="calendar")
    emulator.quota.charge("calendar", OWNER, 1)
    enqueue("selfcheck", user=other_user)
    emulator.log.reset()

    job = sync(google_account, "calendar_sync")

    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    assert job.metrics["details"]["quotaDeferredS"] > 1.0
    assert state(google_account, OWNER).cursor  # finished, with its syncToken
    assert stored(google_account, SHARED) == set()
    assert not SyncState.objects.filter(account=google_account, resource_id=SHARED).exists()
    # The continuation covers the calendars the run did not finish, and only those.
    assert Job.objects.get(parent=job).payload["calendar_ids"] == [SHARED]

    run_due_jobs(kinds=["selfcheck"])
    run_chain(google_account)

    # The primary calendar was not listed again: its syncToken was kept, the shared one's made.
    assert emulator.log.count("calendar.events.list") == 2
    window = calendar_window(config=get_config()).params()
    assert stored(google_account) == listed(emulator, OWNER, **window) | listed(
        emulator, SHARED, **window
    )
    assert state(google_account, SHARED).cursor
    assert {(j.status, j.attempts) for j in chain(google_account)} == {(JobStatus.SUCCEEDED, 1)}
    assert emulator.quota_rejections == 0


def test_a_full_sync_deferred_before_its_reset_continues_as_a_full_sync(
    google_account, emulator, other_user
):
    first = sync(google_account, "calendar_sync")  # alone: three requests, no wait
    assert first.status == JobStatus.SUCCEEDED and "quotaDeferredS" not in first.metrics["details"]
    tokens = {c: state(google_account, c).cursor for c in (OWNER, SHARED)}
    enqueue("selfcheck", user=other_user)

    job = sync(google_account, "calendar_sync", full=True)

    # Out of quota at calendarList: nothing was read, no token was forgotten.
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    assert job.metrics["details"]["quotaDeferredS"] > 1.0
    assert job.metrics["itemsFetched"] == 0
    assert {c: state(google_account, c).cursor for c in (OWNER, SHARED)} == tokens
    follow = Job.objects.get(parent=job)
    assert follow.payload["full"] is True

    run_due_jobs(kinds=["selfcheck"])
    run_chain(google_account)

    follow.refresh_from_db()
    assert follow.status == JobStatus.SUCCEEDED and follow.attempts == 1
    # The continuation relisted both windows (the full sync it continues), storing nothing anew.
    assert follow.metrics["itemsFetched"] == first.metrics["itemsFetched"]
    assert follow.metrics["itemsInserted"] == 0
    assert emulator.quota_rejections == 0


def test_alone_a_calendar_sync_sleeps_through_the_wait_as_before(google_account, emulator):
    mailbox = emulator.mailbox()
    for i in range(2 * PAGE + 20):
        mailbox.add_event(OWNER, meeting(f"Standup {i}", days=1 + i % 60, attendees=[]))

    started = time.monotonic()
    job = sync(google_account, "calendar_sync")
    took = time.monotonic() - started

    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    assert "quotaDeferredS" not in job.metrics["details"]
    assert took > WINDOW_S / 2
    assert not Job.objects.filter(parent=job, kind="calendar_sync").exists()
    assert emulator.quota_rejections == 0


def test_a_calendar_backfill_out_of_quota_yields_and_resumes(
    pipeline_config, google_account, emulator, other_user
):
    # Backfill (background: half the per-user limit, so 3 of 6): calendarList, then the
    # primary calendar's older events over three pages; the third waits.
    pipeline_config(
        calendar_window_past_days=30,
        backfill_horizon_days=3650,
        calendar_requests_per_user_per_minute=2 * LIMIT,
    )
    emulator.quota = QuotaMeter(
        QuotaLimits(calendar_requests_per_user=2 * LIMIT, window_s=WINDOW_S)
    )
    mailbox = emulator.mailbox()
    for i in range(2 * PAGE + 20):
        mailbox.add_event(OWNER, meeting(f"Old review {i}", days=-40 - i % 300, attendees=[]))
    sync(google_account, "calendar_sync")  # the window first: its rows have syncTokens
    time.sleep(PACER_WINDOW_S)  # its requests leave the window
    before = stored(google_account)
    enqueue("selfcheck", user=other_user)
    backfill = enqueue(
        "calendar_backfill", user=google_account.user_id, payload={"account_id": google_account.pk}
    )
    emulator.log.reset()

    started = time.monotonic()
    run_job(backfill.pk)
    took = time.monotonic() - started
    backfill.refresh_from_db()

    assert backfill.status == JobStatus.SUCCEEDED and backfill.attempts == 1
    assert took < WINDOW_S / 2, f"the backfill slept {took:.1f}s in the pacer instead of yielding"
    assert backfill.metrics["details"]["quotaDeferredS"] > 1.0
    assert backfill.metrics["itemsFetched"] == 2 * PAGE
    row = state(google_account, BACKFILL_PREFIX + OWNER)
    assert row.page_token and row.backfill_done_at is None

    run_due_jobs(kinds=["selfcheck"])
    run_chain(google_account, "calendar_backfill")

    window = calendar_window(config=get_config())
    horizon = backfill_horizon(config=get_config())
    assert horizon is not None
    older = {
        calendar_id: listed(
            emulator,
            calendar_id,
            timeMin=CalendarWindow(horizon, horizon).params()["timeMin"],
            timeMax=window.params()["timeMin"],
        )
        for calendar_id in (OWNER, SHARED)
    }
    assert len(older[OWNER]) > 2 * PAGE
    assert stored(google_account) == before | older[OWNER] | older[SHARED]
    jobs = list(chain(google_account, "calendar_backfill"))
    assert {(j.status, j.attempts) for j in jobs} == {(JobStatus.SUCCEEDED, 1)}
    # Every older event fetched once: the third page from the saved page token.
    assert sum(j.metrics["itemsFetched"] for j in jobs) == len(older[OWNER]) + len(older[SHARED])
    for calendar_id in (OWNER, SHARED):
        row = state(google_account, BACKFILL_PREFIX + calendar_id)
        assert row.backfill_done_at is not None and not row.page_token
    assert emulator.quota_rejections == 0
