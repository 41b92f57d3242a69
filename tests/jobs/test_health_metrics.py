"""/health/ for load balancers and /metrics for Prometheus, through real HTTP requests."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import pytest
from django.db.migrations.recorder import MigrationRecorder
from prometheus_client.parser import text_string_to_metric_families

from jobs import views
from jobs.enqueue import enqueue
from jobs.google import pacer
from jobs.metrics import FOLD_LAG_S, run_totals_fold
from jobs.models import Job, JobStatus
from jobs.runner import run_job
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env

pytestmark = pytest.mark.django_db


def scrape(client) -> dict[str, dict[tuple, float]]:
    """name -> {labels as sorted tuple: value} for every sample of /metrics."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def finish_long_ago(job: Job, seconds: float = FOLD_LAG_S + 30) -> None:
    """Move a finished run back in time (its duration kept), past the fold's lag."""
    job.refresh_from_db()
    Job.objects.filter(pk=job.pk).update(
        started_at=job.started_at - timedelta(seconds=seconds),
        finished_at=job.finished_at - timedelta(seconds=seconds),
    )


def test_health_is_ok_when_everything_answers(client):
    views._migrations_ok_until = 0.0
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert set(body["checks"]) == {"database", "broker", "migrations"}
    assert body["checks"]["broker"]["detail"].startswith("ORM")


def test_health_fails_when_a_migration_is_not_applied(client):
    views._migrations_ok_until = 0.0
    MigrationRecorder.Migration.objects.filter(app="jobs", name="0010_pipeline_status").delete()
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["migrations"]
    assert "jobs.0010_pipeline_status" in body["checks"]["migrations"]["error"]


def test_metrics_parse_and_their_counters_move_with_a_run(client, user):
    before = scrape(client)
    assert "crm_pipeline_job_runs_total" not in before or not before["crm_pipeline_job_runs_total"]
    job = enqueue("record", user=user, payload={"items": 4})
    run_job(job.pk)
    finish_long_ago(job)
    after = scrape(client)
    labels = (("kind", "record"), ("status", "succeeded"))
    assert after["crm_pipeline_job_runs_total"][labels] == 1
    assert after["crm_pipeline_job_items_fetched_total"][(("kind", "record"),)] == 4
    assert after["crm_pipeline_job_items_inserted_total"][(("kind", "record"),)] == 4
    buckets = after["crm_pipeline_job_run_duration_seconds_bucket"]
    assert buckets[(*labels[:1], ("le", "+Inf"), labels[1])] == 1
    assert buckets[(*labels[:1], ("le", "0.1"), labels[1])] == 1  # a run of a few ms
    assert after["crm_pipeline_job_run_duration_seconds_count"][labels] == 1
    # scraped again: the same run is not counted twice
    assert scrape(client)["crm_pipeline_job_runs_total"][labels] == 1
    # a second run, and a failure
    second = enqueue("record", user=user, payload={"fail_permanent": True})
    run_job(second.pk)
    finish_long_ago(second)
    again = scrape(client)
    assert again["crm_pipeline_job_runs_total"][(("kind", "record"), ("status", "failed"))] == 1
    assert again["crm_pipeline_job_runs_total"][labels] == 1


def test_a_retried_job_counts_each_run(user):
    job = enqueue("record", user=user, payload={"fail_permanent": True})
    run_job(job.pk)
    finish_long_ago(job, 600)
    assert run_totals_fold() == 1
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.QUEUED, payload={}, attempts=0, finished_at=None
    )
    run_job(job.pk)
    finish_long_ago(job)
    assert run_totals_fold() == 1
    assert run_totals_fold() == 0


def test_a_run_that_finished_just_now_waits_for_the_next_scrape(user):
    run_job(enqueue("record", user=user).pk)
    assert run_totals_fold() == 0  # within the lag: it may not have committed everywhere


def test_metrics_gauges_show_the_queue_quota_and_health(client, user):
    job = enqueue("record", user=user)
    Job.objects.filter(pk=job.pk).update(run_after=job.run_after - timedelta(hours=1))
    pacer.take("ada@pipeline.example", 10, api="gmail")
    samples = scrape(client)
    active = samples["crm_pipeline_jobs_active"]
    assert active[(("kind", "record"), ("status", "queued"))] == 1
    assert samples["crm_pipeline_queue_due"][(("kind", "record"),)] == 1
    assert samples["crm_pipeline_oldest_due_job_age_seconds"][()] >= 3600
    quota = samples["crm_pipeline_google_quota_units"]
    assert quota[(("api", "gmail"), ("period", "last_minute"))] == 10
    assert quota[(("api", "gmail"), ("period", "today"))] == 10
    health = samples["crm_pipeline_healthy"]
    assert health[(("check", "oldest_due_job"),)] == 0  # waited an hour > 900 s
    assert health[(("check", "needs_reauth"),)] == 1


def test_metrics_want_the_token_when_one_is_set(client, settings):
    settings.CRM_PIPELINE_METRICS_TOKEN = "s3cret-scrape-token"
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"})
    assert right.status_code == 200 and b"crm_pipeline_job_runs" in right.content


# /health/ in a process whose database or broker is down: a real refused connection.
_PROBE = """
import json, django
django.setup()
from django.test import Client
response = Client(HTTP_HOST="localhost").get("/health/")
print(json.dumps({"status": response.status_code, "body": response.json()}))
"""


def _probe(**env: str) -> dict:
    done = subprocess.run(
        [PYTHON, "-c", _PROBE],
        cwd=REPO_ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_health_fails_when_the_database_is_down():
    result = _probe(DATABASE_URL="postgres://crm:pw@127.0.0.1:1/crm?connect_timeout=2")
    assert result["status"] == 503
    body = result["body"]
    assert "database" in body["failed"] and body["status"] == "fail"
    assert body["checks"]["database"]["error"].endswith("database unreachable")
    assert "pw" not in json.dumps(body)  # the connection string never shows


@pytest.mark.slow
def test_health_fails_when_the_redis_broker_is_down():
    result = _probe(REDIS_URL="redis://127.0.0.1:1/0")
    assert result["status"] == 503
    assert result["body"]["failed"] == ["broker"]
    assert result["body"]["checks"]["database"]["ok"] is True


def test_the_pacer_keeps_a_days_total_per_scope_and_sweeps_old_days():

    from django.utils import timezone

    from jobs.models import QuotaDaily
    from jobs.models.quota import QUOTA_DAILY_KEEP_DAYS

    pacer.take("ada@pipeline.example", 5, api="gmail")
    pacer.take("ada@pipeline.example", 7, api="gmail", priority="background")
    today = timezone.now().date()
    totals = dict(QuotaDaily.objects.values_list("scope", "units"))
    assert totals == {
        "gmail:project": 12,
        "gmail:user:ada@pipeline.example": 12,
        "gmail:user:ada@pipeline.example:background": 7,
    }
    old = QuotaDaily.objects.create(
        scope="gmail:project", day=today - timedelta(days=QUOTA_DAILY_KEEP_DAYS + 1), units=1
    )
    pacer.sweep()
    assert not QuotaDaily.objects.filter(pk=old.pk).exists()
    assert QuotaDaily.objects.count() == 3
