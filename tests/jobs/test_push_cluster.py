"""Push end to end on a real qcluster: the emulator announces injected mail and meetings to the
live endpoints (signed Pub/Sub pushes, Calendar channel messages), and they become
interactions and timeline events within seconds; a burst of 100 notifications costs one sync
run plus at most one follow-up. Prints the latency figures (run with -s to see them live)."""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from django_q.models import Schedule

from google_emulator.server import GoogleEmulator
from jobs.google.accounts import google_account_connect
from jobs.google.push_auth import jwks_caches_clear
from jobs.models import GoogleAccount, Interaction, Job, RawEvent
from jobs.models.job import ACTIVE_STATUSES
from jobs.sync.enqueue import sync_enqueue
from jobs.sync.push import push_reconcile
from tests.cluster import qcluster, wait_until
from tests.fixtures.accounts import CALENDAR_READONLY, GMAIL_READONLY
from tests.fixtures.push import AUDIENCE, PUSH_ACCOUNT, TOPIC, gmail_envelope
from timeline.models import TimelineEvent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OWNER = "push.owner@pipeline.example"


@dataclass
class World:
    emulator: GoogleEmulator
    account: GoogleAccount
    pipeline: dict
    gmail_url: str


@pytest.fixture
def world(settings, live_server, pipeline_config, user) -> Iterator[World]:
    """An emulator whose Pub/Sub push subscription and calendar channels call the live server,
    push configured in this process and for the cluster, the account watched and synced once."""
    jwks_caches_clear()
    with GoogleEmulator(require_token=True) as emulator:
        emulator.add_mailbox(OWNER)
        settings.GOOGLE_API_ROOT = emulator.url
        settings.GOOGLE_TOKEN_URI = settings.GOOGLE_AUTH_URI = settings.GOOGLE_REVOKE_URI = ""
        gmail_url = f"{live_server.url}/google/push/gmail/"
        emulator.push.subscribe(TOPIC, gmail_url, audience=AUDIENCE, service_account=PUSH_ACCOUNT)
        pipeline = {
            "push_gmail_topic": TOPIC,
            "push_gmail_audience": AUDIENCE,
            "push_gmail_service_account": PUSH_ACCOUNT,
            "push_jwks_url": emulator.jwks_url,
            "push_calendar_address": f"{live_server.url}/google/push/calendar/",
        }
        pipeline_config(**pipeline)
        account = google_account_connect(
            user=user,
            email=OWNER,
            refresh_token=emulator.register_account(OWNER),
            scopes=[GMAIL_READONLY, CALENDAR_READONLY],
        )
        # Only what the test starts runs (no periodic sync firing at the cluster's start).
        Schedule.objects.all().delete()
        assert not push_reconcile(account=account).failures
        yield World(emulator, account, pipeline, gmail_url)
        jwks_caches_clear()


def idle() -> bool:
    return not Job.objects.filter(status__in=ACTIVE_STATUSES).exists()


def inject(emulator: GoogleEmulator, what: str, **body: str) -> dict:
    request = urllib.request.Request(
        f"{emulator.url}emulator/inject/{what}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def arrival(user_id: int, subject: str, timeout: float = 60.0) -> tuple[float, float]:
    """Seconds from now until the interaction with this subject exists, and until its timeline
    event does (polled every 10 ms)."""
    started = time.monotonic()
    end = started + timeout
    interaction_at = None
    while time.monotonic() < end:
        found = Interaction.objects.filter(user_id=user_id, subject=subject).first()
        if found is not None:
            interaction_at = interaction_at or time.monotonic()
            if TimelineEvent.objects.filter(interaction=found).exists():
                return interaction_at - started, time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"{subject!r} did not arrive within {timeout:.0f} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(capsys, line: str) -> None:
    with capsys.disabled():
        sys.stdout.write(f"\n{line}\n")


def test_an_injected_message_becomes_an_interaction_and_a_timeline_event_in_seconds(world, capsys):
    env = {"GOOGLE_API_ROOT": world.emulator.url}
    with qcluster(env=env, **world.pipeline):
        sync_enqueue(accounts=[world.account])
        wait_until(idle, timeout=120, what="the first sync chain")
        mail: list[tuple[float, float]] = []
        for number in range(50):
            subject = f"Push latency probe {number}"
            inject(world.emulator, "message", subject=subject)
            mail.append(arrival(world.account.user_id, subject))
        meetings: list[tuple[float, float]] = []
        for number in range(5):
            summary = f"Push meeting probe {number}"
            inject(world.emulator, "event", summary=summary)
            meetings.append(arrival(world.account.user_id, summary))
        wait_until(idle, timeout=60, what="the last chains")

    interaction = [first for first, _ in mail]
    timeline = [second for _, second in mail]
    figures = {
        "injections": len(mail),
        "interaction_p50_s": round(statistics.median(interaction), 3),
        "interaction_p95_s": round(percentile(interaction, 0.95), 3),
        "timeline_p50_s": round(statistics.median(timeline), 3),
        "timeline_p95_s": round(percentile(timeline, 0.95), 3),
        "meeting_interaction_p50_s": round(statistics.median(m for m, _ in meetings), 3),
        "gmail_syncs": Job.objects.filter(kind="gmail_sync").count(),
    }
    report(capsys, f"push latency on a real cluster: {json.dumps(figures)}")
    assert len(mail) == 50 and len(meetings) == 5
    # Every one arrived through push: nothing else started a sync (no schedule runs).
    deliveries = [d for d in world.emulator.push.deliveries if d.kind == "gmail"]
    assert len(deliveries) == 50 and {d.status for d in deliveries} == {204}
    assert Job.objects.filter(kind="gmail_sync", status="failed").count() == 0


# Deliveries of one notification after a 503, at most (Pub/Sub goes on for days).
REDELIVERIES = 3


def test_a_burst_of_100_notifications_costs_one_sync_plus_at_most_one_follow_up(world, capsys):
    env = {"GOOGLE_API_ROOT": world.emulator.url}
    with qcluster(env=env, **world.pipeline):
        sync_enqueue(accounts=[world.account])
        wait_until(idle, timeout=120, what="the first sync chain")
        before = Job.objects.filter(kind="gmail_sync").order_by("-pk").values("pk").first()
        token = world.emulator.push.signer.token(audience=AUDIENCE, email=PUSH_ACCOUNT)
        first = inject(world.emulator, "message", subject="Burst 1")
        # Halfway through, another message arrives: the rest of the burst announces it.
        second: dict = {}
        arrived = threading.Event()

        def notify(index: int) -> int:
            if index == 50:
                second.update(inject(world.emulator, "message", subject="Burst 2"))
                arrived.set()
            elif index > 50:
                arrived.wait(10)
            history_id = second["historyId"] if index >= 50 else first["historyId"]
            body = json.dumps(gmail_envelope(OWNER, int(history_id))).encode()
            request = urllib.request.Request(
                world.gmail_url,
                data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                method="POST",
            )
            # As Pub/Sub does: a 503 (a sync finishing after it looked for notifications: see
            # jobs/google/push_views.py) is delivered again after its Retry-After.
            for _ in range(REDELIVERIES + 1):
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        return response.status
                except urllib.error.HTTPError as exc:
                    if exc.code != 503:
                        raise
                    redelivered.append(index)
                    time.sleep(float(exc.headers.get("Retry-After") or 10))
            return 503

        redelivered: list[int] = []
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(pool.map(notify, range(100)))
        burst_s = time.monotonic() - started
        wait_until(
            lambda: (
                RawEvent.objects.filter(source_id__in=[first["id"], second["id"]]).count() == 2
                and idle()
            ),
            timeout=60,
            what="the burst's syncs",
        )

    runs = Job.objects.filter(kind="gmail_sync", pk__gt=before["pk"] if before else 0)
    figures = {
        "notifications": 100 + len(world.emulator.push.deliveries) - 1,
        "burst_s": round(burst_s, 3),
        "statuses": sorted(set(statuses)),
        "redelivered_after_503": len(redelivered),
        "gmail_sync_runs": runs.count(),
        "follow_ups": runs.filter(parent__kind="gmail_sync").count(),
    }
    report(capsys, f"burst coalescing on a real cluster: {json.dumps(figures)}")
    assert set(statuses) == {204}
    # Both messages are in, from one run plus at most one follow-up (or a second run that a
    # notification arriving after the first one ended started instead).
    assert 1 <= runs.count() <= 2
