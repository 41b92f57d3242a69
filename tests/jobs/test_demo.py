"""The README's first command: `manage.py demo` runs the chain on real workers, idempotently."""

from __future__ import annotations

import json
import subprocess

import pytest
from django.utils import timezone

from contacts.models import Contact, InteractionParticipant
from insights.models import Insight
from jobs.models import Interaction, Job, RawEvent
from search.models import Embedding
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env
from timeline.models import TimelineEvent

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
    # The chain goes on past normalization on the same workers: people, timeline, rollups.
    assert summary["contacts"] == Contact.objects.filter(merged_into__isnull=True).count() > 0
    assert summary["participants"] == InteractionParticipant.objects.count() > 0
    assert summary["timelineEvents"] == TimelineEvent.objects.count() > 0
    assert set(summary["timelineEventsByType"]) == {"email_received", "email_sent", "meeting"}
    live = Contact.objects.filter(merged_into__isnull=True)
    # No contact without a participation; rollups count what has happened (not future meetings).
    assert not live.filter(participations__isnull=True).exists()
    assert not live.filter(
        interaction_count=0, participations__occurred_at__lt=timezone.now()
    ).exists()
    done_kinds = set(Job.objects.filter(status="succeeded").values_list("kind", flat=True))
    assert {
        "extract_contacts",
        "write_timeline",
        "update_rollups",
        "generate_insights",
    } <= done_kinds
    assert summary["insights"] == Insight.objects.count() > 0
    # The side branch: every interaction has its search document and vectors.
    assert "embed" in done_kinds
    assert summary["searchDocuments"] == summary["interactions"]
    assert summary["embeddings"] == Embedding.objects.count() >= summary["interactions"] - 5
    assert summary["searchExample"]["mode"] == "hybrid"
    assert len(summary["searchExample"]["hits"]) == 3
    assert sum(summary["insightsByKind"].values()) == summary["insights"]
    assert not Job.objects.filter(status__in=["queued", "running", "retrying"]).exists()

    lines, again = demo("--workers", "inline")
    assert again["rawEventsInserted"] == 0 and again["interactionsInserted"] == 0
    assert again["rawEvents"] == summary["rawEvents"]
    assert again["timelineEvents"] == summary["timelineEvents"]
    assert again["participants"] == summary["participants"]
    assert again["insights"] == Insight.objects.count()
    assert again["embeddings"] == summary["embeddings"]  # unchanged text: nothing re-embedded
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


def test_a_terminated_demo_stops_its_cluster():
    import re
    import signal
    import time

    process = subprocess.Popen(
        [PYTHON, "manage.py", "demo", "--messages", "400", "--events", "5"],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    cluster_pid = None
    while cluster_pid is None:
        line = process.stdout.readline()
        assert line, "the demo ended before starting its cluster"
        found = re.search(r"starting a django-q2 cluster .*pid (\d+)", line)
        cluster_pid = int(found.group(1)) if found else None
    process.send_signal(signal.SIGTERM)  # the demo alone, not its cluster's session
    process.communicate(timeout=60)

    def alive(pid: int) -> bool:  # a zombie (exited, not yet reaped by init) is not alive
        try:
            with open(f"/proc/{pid}/status") as status:
                states = [line.split()[1] for line in status if line.startswith("State:")]
            return states != ["Z"]
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while alive(cluster_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(cluster_pid), "the cluster outlived the demo"


def test_the_demo_refuses_a_bad_serve_address_before_doing_anything():
    done = subprocess.run(
        [PYTHON, "manage.py", "demo", "--serve", "nonsense"],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "--serve expects ADDR:PORT" in done.stderr
    assert "applying migrations" not in done.stdout
    assert "Traceback" not in done.stderr


def test_demo_serve_leaves_a_server_with_printed_credentials_that_open_the_pipeline_page():
    import http.cookiejar
    import os
    import re
    import signal
    import socket
    import time
    import urllib.parse
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            *(PYTHON, "manage.py", "demo", "--messages", "20", "--events", "2"),
            *("--workers", "inline", "--serve", f"127.0.0.1:{port}"),
        ],
        cwd=REPO_ROOT,
        env=subprocess_env(DEBUG="true"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        credentials = None
        deadline = time.monotonic() + 240
        assert process.stdout is not None
        while credentials is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "the demo ended before printing its credentials"
            credentials = re.search(r"sign in as: (\S+) / (\S+)", line)
        assert credentials is not None
        username, password = credentials.groups()
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        base = f"http://127.0.0.1:{port}"
        login_url = f"{base}/admin/login/?next=/admin/jobs/job/pipeline/"
        for _ in range(100):  # the server binds right after printing
            try:
                page = opener.open(login_url, timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the demo server never answered")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None
        form = urllib.parse.urlencode(
            {
                "csrfmiddlewaretoken": token.group(1),
                "username": username,
                "password": password,
                "next": "/admin/jobs/job/pipeline/",
            }
        ).encode()
        request = urllib.request.Request(login_url, data=form, headers={"Referer": login_url})
        response = opener.open(request, timeout=30)
        assert response.status == 200
        assert response.url.endswith("/admin/jobs/job/pipeline/")
        assert "Pipeline" in response.read().decode()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
