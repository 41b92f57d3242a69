"""The README's first command: `manage.py demo` runs the chain on real workers, idempotently."""

from __future__ import annotations

import json
import subprocess

import pytest

from jobs.models import Interaction, RawEvent
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def demo(*args: str) -> tuple[list[str], dict]:
    done = subprocess.run(
        [PYTHON, "manage.py", "demo", "--messages", "120", "--events", "20", *args],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_the_demo_syncs_and_normalizes_on_a_real_cluster_then_reruns_idempotently():
    lines, summary = demo()
    assert any("starting a django-q2 cluster" in line for line in lines)
    assert summary["rawEvents"] == RawEvent.objects.count() > 120  # mail plus meetings
    assert summary["interactions"] == Interaction.objects.count()
    assert summary["interactions"] + summary["failedNormalizations"] == summary["rawEvents"]
    assert summary["jobsFailed"] == 0 and summary["jobsSucceeded"] >= 4
    assert summary["durationMs"] > 0
    assert not RawEvent.objects.exclude(status__in=["normalized", "failed"]).exists()

    lines, again = demo("--workers", "inline")
    assert again["rawEventsInserted"] == 0 and again["interactionsInserted"] == 0
    assert again["rawEvents"] == summary["rawEvents"]
    assert any("idempotent re-run" in line for line in lines)


def test_the_demo_refuses_a_silly_message_count():
    done = subprocess.run(
        [PYTHON, "manage.py", "demo", "--messages", "0"],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "--messages must be between 1 and 100000" in done.stderr
    assert "Traceback" not in done.stderr
