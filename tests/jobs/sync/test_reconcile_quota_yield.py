"""A reconcile job out of quota hands its worker back when other jobs wait for one.

Where a continuation loses nothing: between the chunks of a Gmail fix once one is stored (what is
stored is no longer missing), and before a provider's first call. The job continues once the
quota frees, without spending an attempt. The emulator enforces the same per-user limits: no
call may be answered 429.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from google_emulator.quota import QuotaLimits, QuotaMeter
from google_emulator.server import GoogleEmulator
from jobs.enqueue import enqueue
from jobs.google import pacer
from jobs.models import GoogleAccount, Job, JobStatus, QuotaUsage, RawEvent, ReconcileRun
from jobs.runner import run_due_jobs, run_job
from jobs.sync.enqueue import sync_enqueue
from tests.fixtures.emulator import OWNER

pytestmark = pytest.mark.django_db

WINDOW_S = 8.0  # the emulator's window (Google's minute, shortened)
# The pacer counts over a longer window, as the product's default does (62 s against Google's
# 60): a call is counted by the emulator a little after the pacer reserved it, and an earlier
# call that took longer to arrive (the first one builds its client) must not still be in the
# emulator's window when the pacer lets a later one go.
PACER_WINDOW_S = WINDOW_S + 2.0
# Gmail units per user per window: the reconcile's background share is half (300), which holds
# the profile and the listing (6 units) and one chunk of 50 messages.get (250), not two.
GMAIL_UNITS = 600
# Calendar requests per user per window: the background share (3) holds calendarList and both
# calendars.

CALENDAR_REQUESTS = 6


@pytest.fixture(autouse=True)
def synced_then_paced(wide_sync_config, google_account, emulator: GoogleEmulator):
    """The account synced without limits, then the pacer and the emulator limited alike."""
    wide_sync_config(reconcile_settle_minutes=0)
    sync_enqueue(accounts=[google_account], providers=("gmail", "calendar"))
    run_due_jobs(kinds=["gmail_sync", "calendar_sync"], until_empty=True)
    assert not Job.objects.filter(status__in=["failed", "cancelled"]).exists()
    QuotaUsage.objects.all().delete()  # the unlimited sync's spend: the limits start now
    wide_sync_config(
        reconcile_settle_minutes=0,
        gmail_quota_units_per_user_per_minute=GMAIL_UNITS,
        calendar_requests_per_user_per_minute=CALENDAR_REQUESTS,
        quota_window_s=PACER_WINDOW_S,
        quota_burst_window_s=0.0,
        google_retry_after_cap_s=30.0,
        quota_yield_after_s=1.0,
    )
    emulator.quota = QuotaMeter(
        QuotaLimits(
            gmail_units_per_user=GMAIL_UNITS,
            calendar_requests_per_user=CALENDAR_REQUESTS,
            window_s=WINDOW_S,
        )
    )


def hide(account: GoogleAccount, provider: str, count: int) -> set[str]:
    """Delete `count` stored raw events of the account (a gap the sync will not see again)."""
    rows = RawEvent.objects.filter(account=account, provider=provider).order_by("source_id")
    ids = list(rows.values_list("source_id", flat=True)[3 : 3 + count])
    RawEvent.objects.filter(account=account, provider=provider, source_id__in=ids).delete()
    return set(ids)


def reconcile_job(account: GoogleAccount, provider: str) -> Job:
    return enqueue(
        "reconcile",
        user=account.user_id,
        payload={"account_id": account.pk, "fix": True, "providers": [provider]},
    )


def run_timed(job: Job) -> float:
    started = time.monotonic()
    run_job(job.pk)
    job.refresh_from_db()
    return time.monotonic() - started


def run_chain() -> None:
    deadline = time.monotonic() + 5 * WINDOW_S
    while Job.objects.filter(kind="reconcile", status=JobStatus.QUEUED).exists():
        assert time.monotonic() < deadline, "the reconcile chain did not finish"
        run_due_jobs(kinds=["reconcile"], until_empty=True)
        time.sleep(0.2)


def runs(provider: str) -> list[tuple[str, int, int]]:
    return [
        (run.status, run.missing_count, run.fetched_count)
        for run in ReconcileRun.objects.filter(provider=provider).order_by("id")
    ]


def test_a_gmail_fix_out_of_quota_yields_after_a_chunk_and_continues(
    google_account, emulator, other_user
):
    hidden = hide(google_account, "gmail", 150)
    waiting = enqueue("selfcheck", user=other_user)  # due, waiting for a worker

    job = reconcile_job(google_account, "gmail")
    took = run_timed(job)

    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    assert took < WINDOW_S / 2, f"the fix slept {took:.1f}s in the pacer instead of yielding"
    assert 1.0 < job.metrics["details"]["quotaDeferredS"] <= PACER_WINDOW_S
    # The first chunk is stored and stays; the run is recorded as partial.
    assert runs("gmail") == [("partial", 150, 50)]
    assert RawEvent.objects.filter(source_id__in=hidden).count() == 50
    follow = Job.objects.get(parent=job, kind="reconcile")
    assert follow.kind == "reconcile" and follow.status == JobStatus.QUEUED
    assert follow.run_after > timezone.now() + timedelta(seconds=1)
    assert Job.objects.get(pk=waiting.pk).status == JobStatus.QUEUED

    run_due_jobs(kinds=["selfcheck"])
    # The normalization the first run started for its chunk still waits for a worker: each
    # continuation lists again, finds what is still missing, stores a chunk and yields again.
    assert Job.objects.filter(kind="normalize_gmail", status=JobStatus.QUEUED).exists()
    run_chain()

    assert runs("gmail") == [("partial", 150, 50), ("partial", 100, 50), ("fixed", 50, 50)]
    assert RawEvent.objects.filter(source_id__in=hidden).count() == 150
    jobs = Job.objects.filter(kind="reconcile")
    assert {(j.status, j.attempts) for j in jobs} == {(JobStatus.SUCCEEDED, 1)}
    assert len({j.batch_id for j in jobs}) == 1
    assert emulator.quota_rejections == 0


def test_a_calendar_reconcile_out_of_quota_at_its_start_yields_and_continues(
    google_account, emulator, other_user
):
    hidden = hide(google_account, "calendar", 5)
    # The background share (3 requests) spent: calendarList must wait a window.
    pacer.take(OWNER, 3, api="calendar", priority="background")
    emulator.quota.charge("calendar", OWNER, 3)
    enqueue("selfcheck", user=other_user)

    job = reconcile_job(google_account, "calendar")
    took = run_timed(job)

    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    assert took < WINDOW_S / 2, f"the run slept {took:.1f}s in the pacer instead of yielding"
    assert job.metrics["details"]["quotaDeferredS"] > 1.0
    assert job.metrics["details"]["requests"] == 0
    assert runs("calendar") == [("partial", 0, 0)]
    assert "quota" in ReconcileRun.objects.get().detail
    follow = Job.objects.get(parent=job, kind="reconcile")
    assert follow.run_after > timezone.now() + timedelta(seconds=1)

    run_due_jobs(kinds=["selfcheck"])
    run_chain()

    assert runs("calendar") == [("partial", 0, 0), ("fixed", 5, 5)]
    assert RawEvent.objects.filter(source_id__in=hidden).count() == 5
    jobs = Job.objects.filter(kind="reconcile")
    assert {(j.status, j.attempts) for j in jobs} == {(JobStatus.SUCCEEDED, 1)}
    assert emulator.quota_rejections == 0
