"""The apps install into a separate host project: migrate there, then run one job there."""

from __future__ import annotations

import os
import subprocess
import uuid

import psycopg
import pytest
from django.db import connection

from tests.conftest import PYTHON, REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

ENQUEUE_AND_RUN = """
from django.contrib.auth import get_user_model
from jobs.enqueue import enqueue
from jobs.runner import run_due_jobs
from jobs.models import Job
user = get_user_model().objects.create_user("host-user")
job = enqueue("selfcheck", user=user)
run_due_jobs(until_empty=True)
job.refresh_from_db()
print("RESULT " + job.status + " " + str(job.metrics["details"]["pgvector"]))
"""


@pytest.fixture
def host_database():
    settings = connection.settings_dict
    name = f"host_project_{uuid.uuid4().hex[:8]}"
    admin_dsn = dict(
        dbname="postgres", user=settings["USER"], host=settings["HOST"], port=settings["PORT"]
    )
    with psycopg.connect(**{k: v for k, v in admin_dsn.items() if v}, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "HOST_DB_NAME": name,
            "HOST_DB_HOST": settings["HOST"] or "",
            "HOST_DB_PORT": str(settings["PORT"] or ""),
            "HOST_DB_USER": settings["USER"] or "postgres",
        }
    finally:
        with psycopg.connect(**{k: v for k, v in admin_dsn.items() if v}, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "django", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_apps_migrate_and_run_a_job_in_a_separate_host_project(host_database):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DATABASE_URL"))}
    env.update(host_database, DJANGO_SETTINGS_MODULE="tests.host_project.settings")
    env["PYTHONPATH"] = str(REPO_ROOT)
    migrated = django_admin(env, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    assert "Applying jobs.0002_job... OK" in migrated.stdout
    check = django_admin(env, "makemigrations", "--check", "--dry-run")
    assert check.returncode == 0, check.stdout + check.stderr
    ran = django_admin(env, "shell", "-c", ENQUEUE_AND_RUN)
    assert ran.returncode == 0, ran.stderr
    line = [ln for ln in ran.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    status, pgvector = line.split()[1:]
    assert status == "succeeded" and pgvector
