"""manage.py enqueue_sync: finding the user, starting the syncs, following the chain."""

from __future__ import annotations

import itertools
import subprocess
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from jobs.models import GoogleAccount, Job, JobStatus, RawEvent
from jobs.runner import run_due_jobs
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("wide_sync_config")]


def enqueue_sync(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("enqueue_sync", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_an_unknown_user_is_a_clear_error():
    with pytest.raises(CommandError, match=r"^user 'nosuchuser' does not exist$"):
        enqueue_sync("nosuchuser")


def test_an_unknown_user_exits_1_with_the_message_on_stderr():
    done = subprocess.run(
        [PYTHON, "manage.py", "enqueue_sync", "nosuchuser"],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "user 'nosuchuser' does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_user_without_a_google_account_is_a_clear_error(user):
    with pytest.raises(CommandError, match=r"^user 'ada' has no connected Google account$"):
        enqueue_sync("ada")


def test_an_account_that_needs_reauth_is_named(user):
    GoogleAccount.objects.create(user=user, email="ada@gmail.example", status="needs_reauth")
    with pytest.raises(CommandError, match=r"ada@gmail\.example is needs_reauth"):
        enqueue_sync("ada")


def test_it_finds_the_user_by_username_email_or_id_and_reports_job_ids(user):
    account = GoogleAccount.objects.create(user=user, email="ada@gmail.example")

    out, _ = enqueue_sync("ADA@example.com", "--provider", "gmail")

    job = Job.objects.get(kind="gmail_sync")
    assert job.payload == {"account_id": account.pk, "full": False}
    assert f"gmail_sync (ada@gmail.example): job #{job.pk} queued" in out
    assert f"batch {job.batch_id}" in out

    again, _ = enqueue_sync(str(user.pk), "--provider", "gmail", "--full")
    assert f"already active: #{job.pk}" in again
    assert Job.objects.filter(kind="gmail_sync").count() == 1


def test_both_providers_share_one_batch(user):
    GoogleAccount.objects.create(user=user, email="ada@gmail.example")

    enqueue_sync("ada")

    jobs = Job.objects.order_by("kind")
    assert [job.kind for job in jobs] == ["calendar_sync", "gmail_sync"]
    assert len({job.batch_id for job in jobs}) == 1


def test_inline_runs_the_whole_chain_and_prints_each_job_with_its_metrics(google_account):
    out, _ = enqueue_sync("ada", "--inline")

    # The syncs, then whatever stages follow them in the batch.
    jobs = list(Job.objects.order_by("id"))
    assert {"gmail_sync", "calendar_sync"} <= {job.kind for job in jobs}
    assert all(job.status == JobStatus.SUCCEEDED for job in jobs)
    for job in jobs:
        assert f"#{job.pk} {job.kind} succeeded {{" in out
    assert '"itemsInserted":' in out
    assert out.rstrip().endswith(f"chain finished: {len(jobs)} succeeded")
    assert RawEvent.objects.filter(provider="gmail").exists()
    assert RawEvent.objects.filter(provider="calendar").exists()


def test_wait_hints_at_a_missing_cluster_then_reports_what_finished(google_account, monkeypatch):
    # A clock that jumps past the hint delay, and a "cluster" that runs the jobs on sleep.
    class Clock:
        ticks = itertools.count(0, 11)

        @classmethod
        def monotonic(cls) -> float:
            return float(next(cls.ticks))

        @staticmethod
        def sleep(seconds: float) -> None:
            run_due_jobs(until_empty=True)

    monkeypatch.setattr("jobs.management.commands.enqueue_sync.time", Clock)

    out, err = enqueue_sync("ada", "--wait", "--provider", "gmail")

    assert "is a cluster running" in err
    job = Job.objects.get(kind="gmail_sync")
    assert f"#{job.pk} gmail_sync succeeded" in out


def test_a_failed_chain_exits_nonzero_naming_the_job(google_account, emulator):
    emulator.faults.add("oauth.token", "invalid_grant")

    with pytest.raises(CommandError, match=r"#\d+ gmail_sync failed"):
        enqueue_sync("ada", "--inline", "--provider", "gmail")

    google_account.refresh_from_db()
    assert google_account.status == "needs_reauth"
