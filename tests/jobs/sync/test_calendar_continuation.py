"""A Calendar sync that stops at its per-run cap continues with the calendars it had not finished,
as one that stops for its quota does: the finished ones keep their new syncTokens and are not
listed again by the continuation (one request each saved, and nothing fetched twice)."""

from __future__ import annotations

import pytest

from jobs.config import get_config
from jobs.models import Job, JobStatus
from jobs.runner import run_due_jobs
from jobs.sync.windows import calendar_window
from tests.fixtures.emulator import OWNER
from tests.fixtures.sync import sync
from tests.jobs.sync.test_calendar_quota_yield import SHARED, chain, listed, state, stored

pytestmark = pytest.mark.django_db


def test_a_sync_stopped_by_its_cap_continues_with_the_calendars_it_had_not_finished(
    google_account, emulator, pipeline_config
):
    pipeline_config(handoff="none", calendar_window_past_days=3650, calendar_pause_s=0.0)
    window = calendar_window(config=get_config()).params()
    own, shared = listed(emulator, OWNER, **window), listed(emulator, SHARED, **window)
    assert own and shared
    # the cap is spent exactly by the primary calendar, listed first
    pipeline_config(calendar_max_events_per_run=len(own))
    emulator.log.reset()

    job = sync(google_account, "calendar_sync")

    assert job.status == JobStatus.SUCCEEDED
    assert stored(google_account, OWNER) == own and stored(google_account, SHARED) == set()
    assert state(google_account, OWNER).cursor  # finished, with its syncToken
    follow = Job.objects.get(parent=job)
    assert follow.payload["calendar_ids"] == [SHARED]
    lists_before = emulator.log.count("calendar.events.list")

    pipeline_config(calendar_max_events_per_run=len(shared) + 1)
    while chain(google_account).filter(status=JobStatus.QUEUED).exists():
        run_due_jobs(kinds=["calendar_sync"], until_empty=True)

    assert stored(google_account) == own | shared
    assert state(google_account, SHARED).cursor
    # the continuation listed the shared calendar only: the primary's syncToken was kept
    assert emulator.log.count("calendar.events.list") - lists_before == 1
    assert {(j.status, j.attempts) for j in chain(google_account)} == {(JobStatus.SUCCEEDED, 1)}
