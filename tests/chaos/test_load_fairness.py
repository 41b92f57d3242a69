"""Load and fairness: 20 users on two real clusters against the honest emulator.

Set-up. One Google API emulator (a real HTTP server in this process) that behaves like Google
for price and pace: 100 ms added to every HTTP request and 100 ms to every call in it (each part
of a batch, served 10 at a time), Google's 2026 quotas enforced over a sliding minute (Gmail
6,000 units per user, 1,200,000 per project; messages.get = 5 units, every batch part priced).
LOAD_USERS users (default 20), each with a Google account of their own whose mailbox holds
exactly LOAD_MESSAGES messages a first sync stores. LOAD_CLUSTERS (default 2) real
`manage.py qcluster` processes (tests.cluster.qcluster: 2 workers each, one queue: the ORM
broker on the test database), the product's defaults for everything else (LOAD_PIPELINE: a JSON
object of CRM_PIPELINE settings for the clusters, to compare configurations). The embed stage
uses the OpenAI-compatible stand-in (tests.fixtures.openai_server) instead of the local model,
so the run measures the pipeline, not numpy on a shared CPU.

Scale. The default is the issue's: 20 x 2,000 (40,000 interactions); it took 5.4 min (4.7 min
of load) on the shared 2-core machine at load average ~5, and 9.3 min at load average 10-13.
LOAD_MESSAGES=500 is a quick look (10,000 interactions, ~2 min), but only the full scale tells
the engine before syncs yielded their worker from today's (see the last assertion).

What happens. All users but the last get a first Gmail sync at once (sync_enqueue, a batch
each); the last user's sync is enqueued LOAD_LATE_S seconds later (default 10), behind the
others' backlog. The run ends when every user has LOAD_MESSAGES interactions and no job is
active.

Definitions (printed in the FIGURES line, times in seconds):
- a user's completion time: from the `created_at` of the user's first gmail_sync job (its
  enqueue) to the greatest `created_at` of the user's interactions (the last one written by
  normalization); p50/p95 over all users (nearest-rank);
- messages_per_s: all interactions / (last interaction written - first sync enqueued);
- fairness: the slowest on-time user's completion time over the fastest's; late_ratio: the late
  user's completion time over the on-time users' median;
- stage_lag: from the end of a user's sync chain (its last gmail_sync finished) to its last
  interaction: how long its later stages queued behind other users' work.

Asserted: exactly USERS x MESSAGES interactions (and MESSAGES per user); the emulator answered
0 quota 429s (per user and per project); every job succeeded (none failed, cancelled or left
active); fairness <= ceil(on-time users / worker slots) + 1 (see `fairness_bound`); the late
user's completion time <= the slowest on-time user's + the quota floor of one account's sync
(see `quota_floor_s`: 60 s at 2,000 messages): it does not wait for the whole backlog. At full
scale, before syncs yielded their worker when out of quota, it took 557 s against the on-time
users' 379-476 s (81 s more; a first run: 571 against 505, 66 s more) and fails this; after, it
took 269 s against 200-284 s (2 clusters) and 488 s against 298-467 s (1 cluster).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Count, Max, Min
from django_q.models import Schedule

from bench.sync import syncable_mailbox
from google_emulator.quota import QuotaLimits, QuotaMeter
from google_emulator.server import GoogleEmulator
from jobs.config import get_config
from jobs.google.accounts import google_account_connect
from jobs.models import GoogleAccount, Interaction, Job, JobStatus, Provider
from jobs.models.job import ACTIVE_STATUSES
from jobs.sync.enqueue import sync_enqueue
from tests.cluster import qcluster, wait_until
from tests.fixtures.accounts import GMAIL_READONLY
from tests.fixtures.openai_server import OpenAIStubServer

pytestmark = [pytest.mark.django_db(transaction=True)]

USERS = int(os.environ.get("LOAD_USERS", "20"))
MESSAGES = int(os.environ.get("LOAD_MESSAGES", "2000"))
LATE_S = float(os.environ.get("LOAD_LATE_S", "10"))
CLUSTERS = int(os.environ.get("LOAD_CLUSTERS", "2"))
# CRM_PIPELINE settings for the clusters (a JSON object), to compare configurations by hand:
# LOAD_PIPELINE='{"quota_yield_after_s": 3600}' is the engine before syncs yielded their worker.
PIPELINE = json.loads(os.environ.get("LOAD_PIPELINE") or "{}")
WORKERS_PER_CLUSTER = 2  # tests.cluster.qcluster's
LATENCY_S = 0.1
PART_LATENCY_S = 0.1
PART_CONCURRENCY = 10
WINDOW_S = 60.0  # Google's minute, as the emulator counts it


class RecordingMeter(QuotaMeter):
    """The emulator's quota meter, also keeping every admitted charge (at, scope, units) so
    the busiest sliding minute per user and for the project can be reported."""

    def __init__(self, limits: QuotaLimits | None) -> None:
        super().__init__(limits)
        self.admitted: list[tuple[float, str, float]] = []

    def charge(self, api: str, user: str, units: float) -> None:
        super().charge(api, user, units)  # raises the 429 when over a limit
        if self.limits is not None and units > 0 and api == "gmail":
            at = self._clock()
            with self._lock:
                self.admitted += [(at, f"user:{user.lower()}", units), (at, "project", units)]


@dataclass
class World:
    emulator: GoogleEmulator
    meter: RecordingMeter
    accounts: list[GoogleAccount]
    env: dict[str, str]
    pipeline: dict = field(default_factory=dict)


@pytest.fixture
def world(settings) -> Iterator[World]:
    limits = QuotaLimits()  # Google's 2026 limits, as the pacer's defaults
    config = get_config()
    assert limits.gmail_units_per_user == config.gmail_quota_units_per_user_per_minute
    assert limits.gmail_units_per_project == config.gmail_quota_units_per_project_per_minute
    emulator = GoogleEmulator(
        require_token=True,
        latency_s=LATENCY_S,
        part_latency_s=PART_LATENCY_S,
        part_concurrency=PART_CONCURRENCY,
        quota=limits,
    )
    meter = RecordingMeter(limits)
    emulator.quota = meter
    with emulator, OpenAIStubServer() as embeddings:
        settings.GOOGLE_API_ROOT = emulator.url
        settings.GOOGLE_TOKEN_URI = settings.GOOGLE_AUTH_URI = settings.GOOGLE_REVOKE_URI = ""
        users = get_user_model().objects
        accounts = []
        for number in range(USERS):
            email = f"load{number:02d}@pipeline.example"
            mailbox = syncable_mailbox(email, MESSAGES, config.gmail_excluded_labels)
            assert len(mailbox.messages) == MESSAGES
            emulator.add_mailbox(email, mailbox)
            user = users.create_user(f"load{number:02d}", email=email)
            accounts.append(
                google_account_connect(
                    user=user,
                    email=email,
                    refresh_token=emulator.register_account(email),
                    scopes=[GMAIL_READONLY],
                )
            )
        # Only what the test starts runs: no periodic sync or sweep at the clusters' start.
        Schedule.objects.exclude(func="jobs.runner.tick").delete()
        search = {
            "provider": "openai",
            "openai_base_url": embeddings.base_url,
            "openai_model": "nomic-embed-text",
            "openai_dimensions": 64,
        }
        env = {"GOOGLE_API_ROOT": emulator.url, "CRM_PIPELINE_SEARCH": json.dumps(search)}
        yield World(emulator, meter, accounts, env)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def busiest_minutes(admitted: list[tuple[float, str, float]]) -> dict[str, float]:
    """Per scope, the most units admitted in any sliding minute (as the emulator counts)."""
    by_scope: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for at, scope, units in admitted:
        by_scope[scope].append((at, units))
    peaks = {}
    for scope, spends in by_scope.items():
        spends.sort()
        times = [at for at, _ in spends]
        running = [0.0]
        for _, units in spends:
            running.append(running[-1] + units)
        peaks[scope] = max(
            running[i + 1] - running[bisect.bisect_right(times, at - WINDOW_S)]
            for i, at in enumerate(times)
        )
    return peaks


def fairness_bound(on_time_users: int, slots: int) -> float:
    """The most slowest/fastest may be when the engine is fair.

    Each first sync is one job that holds a worker slot for about the same time T (2,000
    messages paced by the per-user quota), and the slots take the waiting syncs in arrival
    order: the fastest user completes in ~T, the slowest waits for ceil(users / slots) - 1
    rounds before its own, ~ceil(users / slots) * T. One round more absorbs the normalization
    jobs that share the slots and the spread of T between users. A user starved behind
    another's backlog (its continuations, its later stages) would exceed it."""
    return math.ceil(on_time_users / slots) + 1


def quota_floor_s(messages: int) -> float:
    """The least time one account's first sync of `messages` can take, set by its per-user
    quota alone: U units at L per sliding minute need (ceil(U / L) - 1) minutes (60 s for
    2,000 messages: 10,030 units at 6,000). A user starved behind the others' backlog starts
    its own sync only after theirs and so ends at least this much after the slowest of them;
    served in the rotation with the others, it ends within less (its last slice and stages)."""
    units = messages * 5 + 30  # messages.get, plus the listing pages, profile and send-as
    return 60.0 * (math.ceil(units / QuotaLimits().gmail_units_per_user) - 1)


def clusters_ready() -> None:
    """Wait until the clusters run jobs: a few selfcheck jobs succeed (both clusters start
    alike; a second more lets the slower one finish), so start-up is not counted as load."""
    from jobs.enqueue import enqueue

    checks = [enqueue("selfcheck", user=get_user_model().objects.first()) for _ in range(4)]
    ids = [job.pk for job in checks]
    wait_until(
        lambda: Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count() == len(ids),
        timeout=120,
        what="the clusters to start",
    )
    time.sleep(1)


def idle() -> bool:
    return not Job.objects.filter(status__in=ACTIVE_STATUSES).exists()


def all_in() -> bool:
    return Interaction.objects.count() >= USERS * MESSAGES and idle()


def test_load_20_users_fair_and_within_quota(world, capsys):
    accounts = world.accounts
    on_time, late = accounts[:-1], accounts[-1]
    slots = CLUSTERS * WORKERS_PER_CLUSTER
    env = world.env
    started = time.monotonic()
    with contextlib.ExitStack() as clusters:
        for _ in range(CLUSTERS):
            clusters.enter_context(qcluster(env=env, **PIPELINE))
        clusters_ready()
        for account in on_time:
            sync_enqueue(accounts=[account], providers=[Provider.GMAIL])
        time.sleep(LATE_S)
        sync_enqueue(accounts=[late], providers=[Provider.GMAIL])
        wait_until(all_in, timeout=float(os.environ.get("LOAD_TIMEOUT_S", "1500")), what="load")
    wall_s = time.monotonic() - started

    interactions = Interaction.objects.values("user_id").annotate(
        n=Count("id"), last=Max("created_at")
    )
    per_user = {row["user_id"]: row for row in interactions}
    enqueued = {
        row["user_id"]: row["first"]
        for row in Job.objects.filter(kind="gmail_sync")
        .values("user_id")
        .annotate(first=Min("created_at"))
    }
    synced = {
        row["user_id"]: row["done"]
        for row in Job.objects.filter(kind="gmail_sync")
        .values("user_id")
        .annotate(done=Max("finished_at"))
    }
    # How long a user's interactions waited after its sync chain was done (the later stages'
    # queueing: what a user sees when other users' syncs hold the workers).
    stage_lag = [
        (per_user[a.user_id]["last"] - synced[a.user_id]).total_seconds() for a in accounts
    ]
    completion = {
        a.user_id: (per_user[a.user_id]["last"] - enqueued[a.user_id]).total_seconds()
        for a in accounts
    }
    on_time_s = [completion[a.user_id] for a in on_time]
    late_s = completion[late.user_id]
    first_enqueue = min(enqueued.values())
    last_written = max(row["last"] for row in per_user.values())
    span_s = (last_written - first_enqueue).total_seconds()
    total = sum(row["n"] for row in per_user.values())
    jobs = Job.objects.values("status").annotate(n=Count("id"))
    statuses = {row["status"]: row["n"] for row in jobs}
    kinds = {row["kind"]: row["n"] for row in Job.objects.values("kind").annotate(n=Count("id"))}
    retried = Job.objects.filter(attempts__gt=1).count()
    peaks = busiest_minutes(world.meter.admitted)
    user_peaks = [units for scope, units in peaks.items() if scope.startswith("user:")]
    fairness = max(on_time_s) / min(on_time_s)
    figures = {
        "users": USERS,
        "messages_per_user": MESSAGES,
        "clusters": CLUSTERS,
        "worker_slots": slots,
        "late_user_after_s": LATE_S,
        "pipeline": PIPELINE,
        "interactions": total,
        "span_s": round(span_s, 1),
        "wall_s": round(wall_s, 1),
        "messages_per_s": round(total / span_s, 1),
        "completion_p50_s": round(statistics.median([*on_time_s, late_s]), 1),
        "completion_p95_s": round(percentile([*on_time_s, late_s], 0.95), 1),
        "completion_min_s": round(min(on_time_s), 1),
        "completion_max_s": round(max(on_time_s), 1),
        "fairness": round(fairness, 2),
        "fairness_bound": fairness_bound(len(on_time), slots),
        "stage_lag_p50_s": round(statistics.median(stage_lag), 1),
        "stage_lag_max_s": round(max(stage_lag), 1),
        "late_user_s": round(late_s, 1),
        "late_ratio": round(late_s / statistics.median(on_time_s), 2),
        "late_minus_slowest_s": round(late_s - max(on_time_s), 1),
        "late_bound_s": quota_floor_s(MESSAGES),
        "quota_429": world.emulator.quota_rejections,
        "quota_429_by_reason": dict(world.meter.rejections),
        "peak_units_per_min_user": round(max(user_peaks)),
        "peak_units_per_min_project": round(peaks.get("project", 0)),
        "limit_user": world.meter.limits.gmail_units_per_user,
        "limit_project": world.meter.limits.gmail_units_per_project,
        "jobs": statuses,
        "jobs_by_kind": kinds,
        "jobs_retried": retried,
        "http_requests": world.emulator.log.count(),
        "completion_by_user_s": [round(completion[a.user_id], 1) for a in accounts],
    }
    with capsys.disabled():
        sys.stdout.write(f"\nFIGURES: {json.dumps(figures)}\n")

    assert total == USERS * MESSAGES
    assert {a.user_id: per_user[a.user_id]["n"] for a in accounts} == {
        a.user_id: MESSAGES for a in accounts
    }
    assert world.emulator.quota_rejections == 0, dict(world.meter.rejections)
    assert set(statuses) == {JobStatus.SUCCEEDED}, statuses
    assert fairness <= fairness_bound(len(on_time), slots), figures
    assert late_s <= max(on_time_s) + quota_floor_s(MESSAGES), figures
