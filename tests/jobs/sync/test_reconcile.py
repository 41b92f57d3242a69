"""Reconciliation (issue 12, item 8): per account, what Google lists in the sync's window against
what is stored; gaps recorded, fetched with --fix through the sync's store path, shown on the
pipeline page and by pipeline_status, started per account by the schedule."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from google_emulator.generator import generate_mailbox
from google_emulator.server import GoogleEmulator
from jobs.google.accounts import google_account_connect
from jobs.models import (
    GoogleAccount,
    GoogleAccountStatus,
    Job,
    JobStatus,
    NormalizationStatus,
    RawEvent,
    ReconcileRun,
    ReconcileStatus,
    SyncState,
)
from jobs.runner import run_due_jobs
from jobs.schedules import RECONCILE, wanted_schedules
from jobs.status import pipeline_status
from jobs.sync.enqueue import sync_enqueue
from jobs.sync.reconcile import reconcile_schedule
from tests.fixtures.accounts import CALENDAR_READONLY, GMAIL_READONLY
from tests.fixtures.sync import eligible

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("wide_sync_config")]

FIRST = "first.account@pipeline.example"
SECOND = "second.account@pipeline.example"
PAGE = "admin:jobs_job_pipeline"


@pytest.fixture(autouse=True)
def settled(wide_sync_config):
    # The generated mail is up to a minute old: compare everything, however recent.
    wide_sync_config(reconcile_settle_minutes=0)


def full_sync(*accounts: GoogleAccount, providers=("gmail", "calendar")) -> None:
    sync_enqueue(accounts=list(accounts), providers=providers)
    run_due_jobs(kinds=["gmail_sync", "calendar_sync"], until_empty=True)
    assert not Job.objects.filter(
        kind__in=["gmail_sync", "calendar_sync"], status__in=["failed", "cancelled"]
    ).exists()


def reconcile(*args: str) -> str:
    out = StringIO()
    call_command("reconcile", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def normalize() -> None:
    run_due_jobs(kinds=["normalize_gmail", "normalize_calendar"], until_empty=True)


def hide(account: GoogleAccount, provider: str, count: int) -> list[str]:
    """Delete `count` stored raw events of the account (a gap the sync will never see again:
    its cursor is past them); their ids."""
    rows = RawEvent.objects.filter(account=account, provider=provider).order_by("source_id")
    ids = list(rows.values_list("source_id", flat=True)[3 : 3 + count])
    RawEvent.objects.filter(account=account, provider=provider, source_id__in=ids).delete()
    return ids


def latest(account: GoogleAccount, provider: str) -> ReconcileRun:
    return ReconcileRun.objects.filter(account=account, provider=provider).latest("id")


def sync_states(account: GoogleAccount) -> list[tuple]:
    return list(
        SyncState.objects.filter(account=account)
        .order_by("id")
        .values_list("resource_id", "cursor", "pending_ids", "failures", "updated_at")
    )


# -- detection, read-only ------------------------------------------------------------------------


def test_a_gap_is_detected_and_recorded_without_writing_any_raw_event(
    google_account, generated_mailbox
):
    full_sync(google_account)
    hidden = hide(google_account, "gmail", 7)
    hidden_events = hide(google_account, "calendar", 3)
    stored_before = RawEvent.objects.count()
    states_before = sync_states(google_account)

    out = reconcile("ada")

    gmail, calendar = latest(google_account, "gmail"), latest(google_account, "calendar")
    assert gmail.status == ReconcileStatus.GAP and not gmail.fix
    assert gmail.provider_count == eligible(generated_mailbox)
    assert gmail.missing_count == 7 and sorted(gmail.missing_sample) == sorted(hidden)
    assert (gmail.fetched_count, gmail.extra_count) == (0, 0)
    assert gmail.stored_count == eligible(generated_mailbox) - 7
    assert gmail.started_at <= gmail.finished_at
    assert calendar.status == ReconcileStatus.GAP
    assert sorted(calendar.missing_sample) == sorted(hidden_events)
    assert calendar.missing_count == 3
    # Read-only: no raw event written, the sync's states untouched, nothing to normalize.
    assert RawEvent.objects.count() == stored_before
    assert sync_states(google_account) == states_before
    batch = Job.objects.get(kind="reconcile").batch_id
    assert list(Job.objects.filter(batch_id=batch).values_list("kind", flat=True)) == ["reconcile"]
    assert "gmail: gap; listed" in out and "missing 7" in out
    assert "10 item(s) missing: rerun with --fix" in out


def test_fix_fetches_exactly_the_missing_items_which_are_normalized_and_a_rerun_finds_none(
    google_account,
):
    full_sync(google_account)
    normalize()
    hidden = hide(google_account, "gmail", 7)
    hidden_events = hide(google_account, "calendar", 3)
    others = dict(RawEvent.objects.values_list("source_id", "updated_at"))
    states_before = sync_states(google_account)

    out = reconcile("ada", "--fix")

    gmail, calendar = latest(google_account, "gmail"), latest(google_account, "calendar")
    assert (gmail.status, gmail.missing_count, gmail.fetched_count) == ("fixed", 7, 7)
    assert (calendar.status, calendar.missing_count, calendar.fetched_count) == ("fixed", 3, 3)
    job = Job.objects.get(kind="reconcile")
    assert job.status == JobStatus.SUCCEEDED and job.metrics["itemsInserted"] == 10
    # Exactly the hidden ones came back, in the reconcile job's batch; nothing else was touched.
    fetched = RawEvent.objects.filter(batch_id=job.batch_id)
    assert sorted(fetched.values_list("source_id", flat=True)) == sorted(hidden + hidden_events)
    assert all(RawEvent.objects.get(source_id=sid).updated_at == at for sid, at in others.items())
    assert sync_states(google_account) == states_before
    assert "normalization queued" in out

    normalize()
    assert set(fetched.values_list("status", flat=True)) == {NormalizationStatus.NORMALIZED}
    assert Job.objects.filter(kind="normalize_gmail", batch_id=job.batch_id).count() == 1

    reconcile("ada", "--fix")
    assert latest(google_account, "gmail").status == ReconcileStatus.OK
    assert latest(google_account, "gmail").missing_count == 0
    assert latest(google_account, "calendar").missing_count == 0


def test_a_fix_larger_than_the_per_run_cap_continues_until_everything_is_fetched(
    google_account, wide_sync_config
):
    full_sync(google_account, providers=("gmail",))
    hidden = hide(google_account, "gmail", 7)
    wide_sync_config(gmail_max_messages_per_run=3, gmail_chunk_size=2)

    reconcile("ada", "--fix", "--provider", "gmail")

    runs = list(ReconcileRun.objects.filter(provider="gmail").order_by("id"))
    assert [(r.status, r.missing_count, r.fetched_count) for r in runs] == [
        ("partial", 7, 3),
        ("partial", 4, 3),
        ("fixed", 1, 1),
    ]
    jobs = Job.objects.filter(kind="reconcile").order_by("id")
    assert [j.status for j in jobs] == ["succeeded"] * 3
    assert len({j.batch_id for j in jobs}) == 1
    assert RawEvent.objects.filter(source_id__in=hidden).count() == 7


def test_an_item_stored_but_gone_at_google_is_reported_as_extra_and_never_deleted(
    google_account, emulator
):
    full_sync(google_account, providers=("gmail",))
    gone = RawEvent.objects.filter(account=google_account, provider="gmail").order_by("id")[5]
    emulator.mailbox().delete_message(gone.source_id)

    reconcile("ada", "--fix", "--provider", "gmail")

    run = latest(google_account, "gmail")
    assert (run.status, run.missing_count, run.extra_count) == ("gap", 0, 1)
    assert run.extra_sample == [gone.source_id]
    assert RawEvent.objects.filter(pk=gone.pk).exists()


def test_a_provider_whose_first_sync_has_not_finished_is_skipped(google_account):
    out = reconcile("ada", "--fix")

    assert set(ReconcileRun.objects.values_list("status", flat=True)) == {"skipped"}
    assert "first gmail sync has not finished" in out
    assert not RawEvent.objects.exists()


# -- two accounts of one user --------------------------------------------------------------------


@pytest.fixture
def two_accounts(google_settings, user) -> Iterator[tuple[GoogleAccount, GoogleAccount]]:
    now = datetime.now(UTC)
    mailboxes = [
        # Generated for different minutes: the emulator's ids (date plus order) do not collide.
        generate_mailbox(FIRST, messages=40, events=6, seed=41, days=20, now=now),
        generate_mailbox(SECOND, messages=30, events=5, seed=42, days=20, now=now - timedelta(1)),
    ]
    with GoogleEmulator(require_token=True) as emu:
        for email, generated in zip((FIRST, SECOND), mailboxes, strict=True):
            emu.add_mailbox(email, generated)
        google_settings.GOOGLE_API_ROOT = emu.url
        yield tuple(  # type: ignore[misc]
            google_account_connect(
                user=user,
                email=email,
                refresh_token=emu.register_account(email),
                scopes=[GMAIL_READONLY, CALENDAR_READONLY],
            )
            for email in (FIRST, SECOND)
        )


def test_two_accounts_of_one_user_are_reconciled_separately(two_accounts):
    first, second = two_accounts
    full_sync(first, second)
    hidden = hide(first, "gmail", 4)
    # Rows of the first account stored under the second (as an item both mailboxes list would
    # be: raw events are unique per user): neither missing for the first nor fetched again.
    moved = list(
        RawEvent.objects.filter(account=first, provider="gmail")
        .order_by("source_id")
        .values_list("source_id", flat=True)[10:12]
    )
    RawEvent.objects.filter(source_id__in=moved).update(account=second)

    out = reconcile("ada", "--fix", "--provider", "gmail")

    one, two = latest(first, "gmail"), latest(second, "gmail")
    assert (one.missing_count, one.fetched_count, one.elsewhere_count) == (4, 4, 2)
    assert sorted(one.missing_sample) == sorted(hidden)
    assert (two.missing_count, two.extra_count) == (0, 2)
    assert sorted(two.extra_sample) == sorted(moved)
    assert one.job_id != two.job_id
    assert RawEvent.objects.filter(source_id__in=hidden, account=first).count() == 4
    # The moved rows stay where they are: a reconciliation never reassigns a row.
    assert RawEvent.objects.filter(source_id__in=moved, account=second).count() == 2
    assert f"{FIRST}: reconcile job" in out and f"{SECOND}: reconcile job" in out

    reconcile("ada", "--account", SECOND.upper(), "--provider", "gmail")
    assert ReconcileRun.objects.filter(account=first).count() == 1
    assert ReconcileRun.objects.filter(account=second).count() == 2


# -- the command's errors and JSON ----------------------------------------------------------------


def test_the_command_names_an_unknown_user_or_account_without_a_traceback(google_account):
    with pytest.raises(CommandError, match="user 'nobody' does not exist"):
        reconcile("nobody")
    with pytest.raises(CommandError, match=re.escape("has no Google account 'other@example.com'")):
        reconcile("ada", "--account", "other@example.com")
    GoogleAccount.objects.filter(pk=google_account.pk).update(
        status=GoogleAccountStatus.NEEDS_REAUTH
    )
    with pytest.raises(CommandError, match="must reconnect it"):
        reconcile("ada", "--account", google_account.email)
    assert not Job.objects.exists()


def test_the_command_prints_json(google_account):
    full_sync(google_account, providers=("gmail",))
    hidden = hide(google_account, "gmail", 2)

    data = json.loads(reconcile("ada", "--json", "--provider", "gmail"))

    (account,) = data["accounts"]
    (run,) = account["runs"]
    assert account["account"] == google_account.email and data["fix"] is False
    assert (run["provider"], run["status"], run["missing"]) == ("gmail", "gap", 2)
    assert sorted(run["missingSample"]) == sorted(hidden)


# -- pipeline page and pipeline_status -----------------------------------------------------------


def test_the_pipeline_page_and_pipeline_status_show_a_gap_and_nothing_once_fixed(
    google_account, staff_client
):
    full_sync(google_account, providers=("gmail",))
    page = staff_client.get(reverse(PAGE)).content.decode()
    assert "Reconciliation gaps" not in page
    hide(google_account, "gmail", 5)
    reconcile("ada", "--provider", "gmail")
    run = latest(google_account, "gmail")

    page = staff_client.get(reverse(PAGE)).content.decode()
    assert "Reconciliation gaps" in page
    assert 'data-figure="reconcileGaps.0.missing" data-value="5"' in page
    assert 'data-figure="reconcileGaps.0.unfetched" data-value="5"' in page
    runs_url = reverse("admin:jobs_reconcilerun_changelist")
    assert f"{runs_url}?account__id__exact={google_account.pk}&amp;provider__exact=gmail" in page
    out = StringIO()
    call_command("pipeline_status", "--json", stdout=out, stderr=StringIO())
    (gap,) = json.loads(out.getvalue())["reconcileGaps"]
    assert (gap["runId"], gap["email"], gap["missing"], gap["unfetched"]) == (
        run.pk,
        google_account.email,
        5,
        5,
    )
    text = StringIO()
    call_command("pipeline_status", stdout=text, stderr=StringIO())
    assert "reconciliation gaps" in text.getvalue()
    # The run's admin pages open (read-only), the changelist filtered as the page links it.
    assert staff_client.get(f"{runs_url}?account__id__exact={google_account.pk}").status_code == 200
    change = staff_client.get(reverse("admin:jobs_reconcilerun_change", args=[run.pk]))
    assert change.status_code == 200 and b'name="_save"' not in change.content

    reconcile("ada", "--fix", "--provider", "gmail")
    assert pipeline_status().reconcile_gaps == []
    assert "Reconciliation gaps" not in staff_client.get(reverse(PAGE)).content.decode()


def test_reconcile_runs_in_the_admin_are_scoped_to_their_user(
    google_account, client, django_user_model, other_user
):
    full_sync(google_account, providers=("gmail",))
    reconcile("ada", "--provider", "gmail")
    theirs = GoogleAccount.objects.create(user=other_user, email="bob@pipeline.example")
    ReconcileRun.objects.create(
        user=other_user, account=theirs, provider="gmail", status="ok", started_at=datetime.now(UTC)
    )
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.get(username="ada")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_reconcilerun"))
    client.force_login(staff)

    page = client.get(reverse("admin:jobs_reconcilerun_changelist")).content.decode()

    assert google_account.email in page and "bob@pipeline.example" not in page
    other = ReconcileRun.objects.get(account=theirs)
    assert client.get(reverse("admin:jobs_reconcilerun_change", args=[other.pk])).status_code in (
        302,
        404,
    )


# -- the schedule --------------------------------------------------------------------------------


def test_the_schedule_enqueues_one_job_per_active_account_and_never_a_second(two_accounts):
    first, second = two_accounts
    GoogleAccount.objects.create(
        user=first.user, email="gone@pipeline.example", status=GoogleAccountStatus.REVOKED
    )
    wanted = wanted_schedules()[RECONCILE]
    assert wanted["func"] == "jobs.sync.reconcile.reconcile_schedule"
    assert wanted["minutes"] == 60

    assert reconcile_schedule() == 2
    jobs = Job.objects.filter(kind="reconcile").order_by("id")
    assert sorted(j.payload["account_id"] for j in jobs) == sorted([first.pk, second.pk])
    assert {j.dedupe_key for j in jobs} == {f"reconcile:{first.pk}", f"reconcile:{second.pk}"}
    assert all(j.priority == 5 and j.payload["fix"] is True for j in jobs)
    # Still queued: the lanes refuse a second job.
    assert reconcile_schedule() == 0
    assert Job.objects.filter(kind="reconcile").count() == 2

    full_sync(first, second)
    run_due_jobs(kinds=["reconcile"], until_empty=True)
    assert ReconcileRun.objects.filter(status="skipped").count() == 0
    # Reconciled: not due again before reconcile_interval_hours.
    assert reconcile_schedule() == 0
    ReconcileRun.objects.filter(account=second).update(
        started_at=datetime.now(UTC) - timedelta(hours=25)
    )
    assert reconcile_schedule() == 1
    assert Job.objects.filter(kind="reconcile", status="queued").get().payload["account_id"] == (
        second.pk
    )


def test_an_account_skipped_before_its_first_sync_is_due_again_at_the_next_check(google_account):
    assert reconcile_schedule() == 1
    run_due_jobs(kinds=["reconcile"], until_empty=True)
    assert ReconcileRun.objects.filter(status="skipped").count() == 2

    assert reconcile_schedule() == 1


def test_reconcile_interval_hours_is_validated(settings):
    from jobs.config import config_problems

    settings.CRM_PIPELINE = {"reconcile_interval_hours": 0}
    (problem,) = config_problems()
    assert "reconcile_interval_hours" in problem and "between 1 and 720" in problem


# -- the engine's guarantees ---------------------------------------------------------------------


class WorkerLease:
    """The run control of the worker that claimed `job` (as in test_sync_fence): fence() holds
    the job row while this worker still holds the lease, else raises LeaseLost; at the n-th
    checkpoint the lease runs out and another worker claims the job."""

    def __init__(self, job: Job, *, take_over_at: int) -> None:
        self.job = job
        self.take_over_at = take_over_at
        self.checkpoints = 0

    def deadline_reached(self) -> bool:
        return False

    def checkpoint(self) -> None:
        from django.utils import timezone

        from jobs.config import get_config
        from jobs.runner import claim, return_expired_leases

        self.checkpoints += 1
        if self.checkpoints == self.take_over_at:
            Job.objects.filter(pk=self.job.pk).update(
                lease_expires_at=timezone.now() - timedelta(seconds=1)
            )
            assert return_expired_leases() == 1
            assert claim(self.job.pk, "worker-b", config=get_config()) is not None

    def fence(self) -> None:
        from django.db import connection

        from jobs.errors import LeaseLost

        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {Job._meta.db_table} WHERE id = %s AND status = %s"
                " AND locked_by = %s AND attempts = %s FOR SHARE",
                [self.job.pk, JobStatus.RUNNING, self.job.locked_by, self.job.attempts],
            )
            if cursor.fetchone() is None:
                raise LeaseLost(f"job {self.job.pk} lost its lease")


def test_a_late_worker_whose_reconcile_job_was_handed_on_stores_nothing_more(
    google_account, wide_sync_config
):
    from jobs.config import get_config
    from jobs.enqueue import enqueue
    from jobs.errors import LeaseLost
    from jobs.runner import claim
    from jobs.sync.reconcile import reconcile_provider

    full_sync(google_account, providers=("gmail",))
    hidden = hide(google_account, "gmail", 7)
    wide_sync_config(gmail_chunk_size=2)
    job = enqueue(
        "reconcile", user=google_account.user_id, payload={"account_id": google_account.pk}
    )
    held = claim(job.pk, "worker-a", config=get_config())
    assert held is not None
    # Checkpoints: the listing's page (1), the first chunk (2), the second chunk (3): there
    # the lease runs out and another worker takes the job.
    lease = WorkerLease(held, take_over_at=3)

    with pytest.raises(LeaseLost):
        reconcile_provider(
            account=google_account,
            provider="gmail",
            fix=True,
            batch_id=held.batch_id,
            control=lease,
            job=held,
        )

    # The first chunk was committed under the lease; nothing after it, and no run recorded.
    assert RawEvent.objects.filter(source_id__in=hidden).count() == 2
    assert not ReconcileRun.objects.exists()


def test_reconcile_calls_are_paced_as_background_work(google_account, monkeypatch):
    from jobs.google import client

    full_sync(google_account, providers=("gmail",))
    hide(google_account, "gmail", 3)
    seen: list[str] = []
    original, original_batch = client.execute, client.batch_execute

    def spy(request, *, account, priority="normal", **kwargs):
        seen.append(priority)
        return original(request, account=account, priority=priority, **kwargs)

    def batch_spy(service, requests, *, account, priority="normal", **kwargs):
        seen.append(f"batch:{priority}")
        return original_batch(service, requests, account=account, priority=priority, **kwargs)

    # Spies that record the priority and call the real client (real HTTP to the emulator).
    monkeypatch.setattr("jobs.sync.reconcile.execute", spy)
    monkeypatch.setattr("jobs.sync.gmail.batch_execute", batch_spy)
    reconcile("ada", "--provider", "gmail", "--fix")

    assert set(seen) == {"background", "batch:background"}
    assert latest(google_account, "gmail").fetched_count == 3


def test_mail_newer_than_the_settle_time_is_not_a_gap_yet(two_accounts, wide_sync_config):
    first, _ = two_accounts
    full_sync(first, providers=("gmail",))
    newest = RawEvent.objects.filter(account=first, provider="gmail").latest("occurred_at")
    newest.delete()
    age_minutes = (datetime.now(UTC) - newest.occurred_at).total_seconds() / 60
    # Settled just before the newest message: its absence is not a gap yet.
    wide_sync_config(reconcile_settle_minutes=int(age_minutes) + 2)
    reconcile("ada", "--account", FIRST, "--provider", "gmail")
    assert latest(first, "gmail").missing_count == 0
    # Once it is older than the settle time, it is.
    wide_sync_config(reconcile_settle_minutes=0)
    reconcile("ada", "--account", FIRST, "--provider", "gmail")
    assert latest(first, "gmail").missing_sample == [newest.source_id]


@pytest.mark.slow
def test_reconciling_a_mailbox_of_3000_messages_with_100_missing(google_settings, user):
    """Figures for the runbook: one account of 3,000 messages (RECONCILE_FIGURES_MESSAGES),
    100 of them missing."""
    import os
    import time

    size = int(os.environ.get("RECONCILE_FIGURES_MESSAGES", "3000"))
    generated = generate_mailbox(FIRST, messages=size, events=0, seed=51, days=30)
    with GoogleEmulator(require_token=True) as emu:
        emu.add_mailbox(FIRST, generated)
        google_settings.GOOGLE_API_ROOT = emu.url
        account = google_account_connect(
            user=user,
            email=FIRST,
            refresh_token=emu.register_account(FIRST),
            scopes=[GMAIL_READONLY, CALENDAR_READONLY],
        )
        full_sync(account, providers=("gmail",))
        hidden = hide(account, "gmail", 100)
        started = time.monotonic()
        reconcile("ada", "--provider", "gmail")
        report_s = time.monotonic() - started
        started = time.monotonic()
        reconcile("ada", "--provider", "gmail", "--fix")
        fix_s = time.monotonic() - started
        requests = Job.objects.filter(kind="reconcile").order_by("id").last().metrics["details"]
    run = latest(account, "gmail")
    assert (run.provider_count, run.missing_count, run.fetched_count) == (
        eligible(generated),
        100,
        100,
    )
    assert RawEvent.objects.filter(account=account, source_id__in=hidden).count() == 100
    figures = {
        "messages": eligible(generated),
        "missing": 100,
        "reportSeconds": round(report_s, 2),
        "fixSeconds": round(fix_s, 2),
        "requests": requests["requests"],
    }
    print("FIGURES: " + json.dumps(figures))
