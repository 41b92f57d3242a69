"""A push_renew job out of quota hands its worker back when other jobs wait for one.

Each watch or channel is saved as it is made, so the job stops before the call that would wait
longer than quota_yield_after_s and continues once the quota frees, doing only what is still
due, without spending an attempt. The emulator enforces the same Calendar limit: no call may be
answered 429.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from google_emulator.quota import QuotaLimits, QuotaMeter
from google_emulator.server import GoogleEmulator
from jobs.enqueue import enqueue
from jobs.models import Job, JobStatus, PushChannel
from jobs.runner import run_due_jobs, run_job
from tests.fixtures.emulator import OWNER

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("push_settings", "wide_sync_config")]

SHARED = "c_839511c777138af419bf@group.calendar.google.com"
WINDOW_S = 8.0  # the emulator's window (Google's minute, shortened)
# The pacer counts over a longer window, as the product's default does (62 s against Google's
# 60): a call is counted by the emulator a little after the pacer reserved it, and an earlier
# call that took longer to arrive (the first one builds its client) must not still be in the
# emulator's window when the pacer lets a later one go.
PACER_WINDOW_S = WINDOW_S + 2.0
# Calendar requests per user per window: calendarList and one events.watch; the second waits.
LIMIT = 2


@pytest.fixture(autouse=True)
def paced(wide_sync_config, emulator: GoogleEmulator):
    wide_sync_config(
        calendar_requests_per_user_per_minute=LIMIT,
        quota_window_s=PACER_WINDOW_S,
        quota_burst_window_s=0.0,
        google_retry_after_cap_s=30.0,
        quota_yield_after_s=1.0,
    )
    emulator.quota = QuotaMeter(QuotaLimits(calendar_requests_per_user=LIMIT, window_s=WINDOW_S))


def test_a_push_renewal_out_of_quota_yields_and_opens_the_rest_later(
    google_account, emulator, other_user
):
    waiting = enqueue("selfcheck", user=other_user)
    job = enqueue(
        "push_renew", user=google_account.user_id, payload={"account_id": google_account.pk}
    )

    started = time.monotonic()
    run_job(job.pk)
    took = time.monotonic() - started
    job.refresh_from_db()

    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    assert took < WINDOW_S / 2, f"the renewal slept {took:.1f}s in the pacer instead of yielding"
    assert job.metrics["details"]["quotaDeferredS"] > 1.0
    # The watch and the first channel are made and kept; nothing is left failed or pending.
    rows = PushChannel.objects.filter(account=google_account)
    assert rows.get(provider="gmail").status == "active"
    assert {(r.resource_id, r.status) for r in rows.filter(provider="calendar")} == {
        (OWNER, "active")
    }
    follow = Job.objects.get(parent=job)
    assert follow.kind == "push_renew" and follow.status == JobStatus.QUEUED
    assert follow.run_after > timezone.now() + timedelta(seconds=1)
    assert Job.objects.get(pk=waiting.pk).status == JobStatus.QUEUED

    run_due_jobs(kinds=["selfcheck"])
    deadline = time.monotonic() + 3 * WINDOW_S
    while Job.objects.filter(kind="push_renew", status=JobStatus.QUEUED).exists():
        assert time.monotonic() < deadline, "the renewal did not finish"
        run_due_jobs(kinds=["push_renew"], until_empty=True)
        time.sleep(0.2)

    channels = rows.filter(provider="calendar")
    assert {(r.resource_id, r.status) for r in channels} == {(OWNER, "active"), (SHARED, "active")}
    assert {c.id for c in emulator.push.channels()} == {r.channel_id for r in channels}
    # Only what was still due was done again: one watch, one channel per calendar.
    assert len(emulator.push.watch_calls) == 1
    assert len(emulator.push.channel_calls) == 2
    jobs = Job.objects.filter(kind="push_renew")
    assert {(j.status, j.attempts) for j in jobs} == {(JobStatus.SUCCEEDED, 1)}
    assert emulator.quota_rejections == 0
