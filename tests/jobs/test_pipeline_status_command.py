"""`manage.py pipeline_status`: the figures, exit 0 when healthy, a readable reason for each
unhealthy condition (one test each)."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from jobs.enqueue import enqueue
from jobs.models import GoogleAccount, GoogleAccountStatus, Job, JobStatus, RawEvent
from jobs.runner import run_job
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("pipeline_status", *args, stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return code, out.getvalue(), err.getvalue()


def test_a_quiet_pipeline_is_healthy(user):
    run_job(enqueue("record", user=user).pk)
    code, out, err = run("--json")
    data = json.loads(out)
    assert code == 0 and data["healthy"] is True and data["problems"] == []
    assert err == ""
    code, text, _ = run()
    assert code == 0 and "healthy" in text.splitlines()[-1]


def test_a_due_job_waiting_too_long_is_unhealthy(user, pipeline_config):
    pipeline_config(health_max_due_job_age_s=600)
    job = enqueue("record", user=user)
    Job.objects.filter(pk=job.pk).update(run_after=timezone.now() - timedelta(minutes=11))
    code, out, err = run("--json")
    assert code == 2
    (problem,) = json.loads(out)["problems"]
    assert problem["check"] == "oldest_due_job"
    assert "oldest due job (record) has waited" in err and "limit 600 s" in err


def test_a_job_due_recently_is_not_a_problem(user, pipeline_config):
    pipeline_config(health_max_due_job_age_s=600)
    job = enqueue("record", user=user)
    Job.objects.filter(pk=job.pk).update(run_after=timezone.now() - timedelta(minutes=9))
    assert run()[0] == 0


def test_a_high_failure_rate_is_unhealthy(user, pipeline_config):
    pipeline_config(health_max_failure_rate=0.25, health_failure_rate_min_jobs=4)
    for fail in (True, True, False, False):
        run_job(enqueue("record", user=user, payload={"fail_permanent": fail}).pk)
    code, out, err = run("--json")
    assert code == 2
    (problem,) = json.loads(out)["problems"]
    assert problem["check"] == "failure_rate"
    assert "2 of 4 jobs finished in the last 3600 s failed (50%, limit 25%)" in err


def test_a_failure_rate_over_too_few_jobs_is_not_judged(user, pipeline_config):
    pipeline_config(health_max_failure_rate=0.25, health_failure_rate_min_jobs=5)
    for fail in (True, True, False, False):
        run_job(enqueue("record", user=user, payload={"fail_permanent": fail}).pk)
    assert run()[0] == 0


def test_accounts_needing_reauth_are_unhealthy(user, pipeline_config):
    GoogleAccount.objects.create(
        user=user, email="ada@pipeline.example", status=GoogleAccountStatus.NEEDS_REAUTH
    )
    code, out, err = run("--json")
    assert code == 2
    assert [p["check"] for p in json.loads(out)["problems"]] == ["needs_reauth"]
    assert "1 Google account(s) need their user to reconnect them (ada@pipeline.example" in err
    pipeline_config(health_max_reauth_accounts=1)
    assert run()[0] == 0


def test_stale_pending_raw_events_no_job_covers_are_unhealthy(user, pipeline_config):
    pipeline_config(pending_sweep_after_s=300)
    RawEvent.objects.create(user=user, provider="gmail", source_id="m1", payload={})
    RawEvent.objects.filter(source_id="m1").update(updated_at=timezone.now() - timedelta(hours=1))
    code, out, err = run("--json")
    assert code == 2
    assert [p["check"] for p in json.loads(out)["problems"]] == ["stale_pending_raw_events"]
    assert "1 raw event(s) have been pending for more than 300 s with no job" in err
    # an active normalize job covers them: the sweep has nothing to do, nothing is wrong
    enqueue("normalize_gmail", user=user, payload={"only_batch": False})
    assert run()[0] == 0


def test_every_problem_is_reported_at_once(user, pipeline_config):
    pipeline_config(health_max_due_job_age_s=60)
    job = enqueue("record", user=user)
    Job.objects.filter(pk=job.pk).update(run_after=timezone.now() - timedelta(minutes=5))
    GoogleAccount.objects.create(
        user=user, email="ada@pipeline.example", status=GoogleAccountStatus.NEEDS_REAUTH
    )
    code, out, err = run("--json")
    assert code == 2
    assert {p["check"] for p in json.loads(out)["problems"]} == {"oldest_due_job", "needs_reauth"}
    assert err.count("unhealthy (") == 2


def test_a_bad_threshold_is_refused_with_one_line(pipeline_config):
    pipeline_config(health_max_failure_rate=2)
    from jobs.config import config_problems

    assert config_problems() == [
        "CRM_PIPELINE['health_max_failure_rate']: got 2; expected a number between 0 and 1"
    ]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_exit_status_reaches_a_shell(user):
    GoogleAccount.objects.create(
        user=user, email="ada@pipeline.example", status=GoogleAccountStatus.NEEDS_REAUTH
    )
    done = subprocess.run(
        [PYTHON, "manage.py", "pipeline_status"],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "unhealthy (needs_reauth)" in done.stderr and "Traceback" not in done.stderr
    assert JobStatus.QUEUED in done.stdout  # the table's header
