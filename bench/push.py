"""Push vs polling: notification-to-interaction latency, and quota spent on an idle account.

Usage: DEBUG=1 .venv/bin/python bench/push.py [--injections 50] [--polls 20] [--days 7]

Runs in a throwaway database (bench_push_<pid>, created and migrated on the configured server,
dropped at the end), against the Google emulator (Google's 2026 per-minute quotas enforced) with
one account whose mailbox starts empty, push configured as in production: the emulator's
Pub/Sub push subscription and calendar channels call this process's push endpoints (Django
served on a loopback port), OIDC tokens verified against the emulator's JWKS.

1. Latency with push, on a real `qcluster` (2 workers): --injections times, a message is
   injected into the emulator, which publishes it; the time until its Interaction exists is
   measured (polled every 10 ms). p50 and p95.
2. The poll's sync time, on the same cluster: the push subscription is detached, a message is
   injected and a gmail_sync enqueued exactly as the periodic schedule enqueues one; the time
   until its Interaction exists, --polls times. A poll finds a message interval/2 after its
   arrival on average (uniform over the interval), so its expected latency at the default
   interval (periodic_sync_minutes, 15) is interval/2 plus that sync time (p50); its p95 is
   0.95 x interval plus the sync's p95. ratio = poll / push.
3. Quota on an idle account over --days simulated days, the jobs run in this process: the
   periodic sync every 15 minutes and the push renewal schedule every hour, as the schedules
   call them, the clocks of the account's sync states and push rows moved back 15 minutes
   after each tick (simulated time; the per-minute quotas are lifted in the emulator and the
   pacer for this part, since days pass in minutes). With push healthy (safety net every
   push_poll_minutes, the watch renewed daily, channels before they expire) vs push off
   (polling every 15 minutes). Gmail units and Calendar requests as the emulator counted them,
   per hour; ratio = push / poll.

Prints progress on stderr and, as the last line, one JSON object.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running as a script puts bench/ first on sys.path, where bench/queue.py shadows stdlib `queue`.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from datetime import timedelta  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
OWNER = "bench.push@pipeline.example"
TOPIC = "projects/crm-bench/topics/gmail-push"
AUDIENCE = "https://crm.bench.example/google/push/gmail/"
PUSH_ACCOUNT = "gmail-push@crm-bench.iam.gserviceaccount.com"
TICK = timedelta(minutes=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--injections", type=int, default=50)
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_pipeline.settings")
    # Progress lines only: not one log line per job of the simulated week.
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    import logging

    from django.db import connection

    logging.getLogger("jobs.metrics").setLevel(logging.WARNING)

    connection.settings_dict["TEST"]["NAME"] = f"bench_push_{os.getpid()}"
    original_name = connection.settings_dict["NAME"]
    database = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    say(f"created and migrated throwaway database {database}")
    try:
        result = run(args)
    finally:
        connection.close()
        connection.creation.destroy_test_db(original_name, verbosity=0)
        say(f"dropped {database}")
    print(json.dumps(result))


def run(args: argparse.Namespace) -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django_q.models import Schedule

    from google_emulator.quota import QuotaLimits
    from google_emulator.server import GoogleEmulator
    from jobs.config import get_config
    from jobs.google.accounts import google_account_connect
    from jobs.google.oauth import SCOPES
    from jobs.google.push import push_health
    from jobs.sync.push import push_reconcile

    # Only what the benchmark starts runs on the cluster (no schedule firing at its start).
    Schedule.objects.all().delete()
    user = get_user_model().objects.create_user("bench-push", email=OWNER)
    interval_s = get_config().periodic_sync_minutes * 60
    with GoogleEmulator(require_token=True, quota=QuotaLimits()) as emulator, Endpoint() as site:
        emulator.add_mailbox(OWNER)
        settings.GOOGLE_API_ROOT = emulator.url
        emulator.push.subscribe(
            TOPIC, f"{site.url}/google/push/gmail/", audience=AUDIENCE, service_account=PUSH_ACCOUNT
        )
        push = {
            "push_gmail_topic": TOPIC,
            "push_gmail_audience": AUDIENCE,
            "push_gmail_service_account": PUSH_ACCOUNT,
            "push_jwks_url": emulator.jwks_url,
            "push_calendar_address": f"{site.url}/google/push/calendar/",
        }
        settings.CRM_PIPELINE = {**settings.CRM_PIPELINE, **push}
        account = google_account_connect(
            user=user, email=OWNER, refresh_token=emulator.register_account(OWNER), scopes=SCOPES
        )
        renewal = push_reconcile(account=account)
        assert not renewal.failures, renewal.failures
        with cluster(emulator.url, push):
            first_sync(account)
            say(f"push: {args.injections} injected messages, each until its interaction")
            pushed = [latency(emulator, account, f"push {n}") for n in range(args.injections)]
            emulator.push.unsubscribe(TOPIC)
            say(f"poll: {args.polls} syncs enqueued as the periodic schedule does")
            polled = [latency(emulator, account, f"poll {n}", poll=True) for n in range(args.polls)]
            # Push back: its next notification covers the mail it did not announce meanwhile
            # (push health marked it), so the account counts as healthy again.
            emulator.push.subscribe(
                TOPIC,
                f"{site.url}/google/push/gmail/",
                audience=AUDIENCE,
                service_account=PUSH_ACCOUNT,
            )
            latency(emulator, account, "push is back")
            wait(idle, "the last chain")
        # Part 3 runs its jobs here; days pass in minutes, so the per-minute limits are lifted.
        settings.CRM_PIPELINE = {
            **settings.CRM_PIPELINE,
            "handoff": "none",
            "gmail_quota_units_per_user_per_minute": 1_000_000_000,
            "calendar_requests_per_user_per_minute": 1_000_000_000,
            "calendar_requests_per_project_per_minute": 1_000_000_000,
            "gmail_chunk_pause_s": 0.0,
            "calendar_pause_s": 0.0,
        }
        emulator.quota = type(emulator.quota)(None)
        say(f"quota: {args.days} simulated days with push")
        health = push_health(accounts=[account])[account.pk]
        assert all(h.healthy for h in health.values()), health
        with_push = idle_quota(emulator, account, args.days)
        settings.CRM_PIPELINE = {
            **settings.CRM_PIPELINE,
            "push_gmail_topic": "",
            "push_calendar_address": "",
        }
        stop_push(account)
        say(f"quota: {args.days} simulated days polling every 15 minutes")
        polling = idle_quota(emulator, account, args.days)
    user.delete()
    return summary(pushed, polled, interval_s, with_push, polling, args)


def summary(
    pushed: list[float],
    polled: list[float],
    interval_s: float,
    with_push: dict,
    polling: dict,
    args: argparse.Namespace,
) -> dict:
    push_p50, push_p95 = statistics.median(pushed), percentile(pushed, 0.95)
    sync_p50, sync_p95 = statistics.median(polled), percentile(polled, 0.95)
    poll_p50 = interval_s / 2 + sync_p50
    poll_p95 = 0.95 * interval_s + sync_p95
    return {
        "injections": args.injections,
        "push_p50_s": round(push_p50, 3),
        "push_p95_s": round(push_p95, 3),
        "poll_interval_s": interval_s,
        "poll_sync_p50_s": round(sync_p50, 3),
        "poll_sync_p95_s": round(sync_p95, 3),
        "poll_expected_p50_s": round(poll_p50, 1),
        "poll_expected_p95_s": round(poll_p95, 1),
        "latency_ratio_p50": round(poll_p50 / push_p50, 1),
        "latency_ratio_p95": round(poll_p95 / push_p95, 1),
        "simulated_days": args.days,
        "gmail_units_per_h_push": with_push["gmail_units_per_h"],
        "gmail_units_per_h_poll": polling["gmail_units_per_h"],
        "gmail_units_ratio": round(
            with_push["gmail_units_per_h"] / polling["gmail_units_per_h"], 3
        ),
        "calendar_requests_per_h_push": with_push["calendar_requests_per_h"],
        "calendar_requests_per_h_poll": polling["calendar_requests_per_h"],
        "calendar_requests_ratio": round(
            with_push["calendar_requests_per_h"] / polling["calendar_requests_per_h"], 3
        ),
        "push_breakdown": with_push["calls"],
        "poll_breakdown": polling["calls"],
    }


# -- the pieces ---------------------------------------------------------------------------------


class Endpoint:
    """This process's Django app on a loopback port (the push endpoints Google calls)."""

    def __enter__(self) -> Endpoint:
        from django.core.servers.basehttp import (
            ThreadedWSGIServer,
            WSGIRequestHandler,
            get_internal_wsgi_application,
        )

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadedWSGIServer(("127.0.0.1", 0), Quiet)
        self.server.set_app(get_internal_wsgi_application())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class cluster:
    """A `qcluster` subprocess (2 workers) on the throwaway database, aimed at the emulator."""

    def __init__(self, api_root: str, pipeline: dict) -> None:
        from django.conf import settings
        from django.db import connection

        from crm_pipeline.embedded_db import database_url

        self.env = dict(
            os.environ,
            GOOGLE_API_ROOT=api_root,
            DATABASE_URL=database_url(connection.settings_dict),
            CRM_PIPELINE=json.dumps({**settings.CRM_PIPELINE, **pipeline}),
            Q_WORKERS="2",
        )

    def __enter__(self) -> cluster:
        say("starting a qcluster (2 workers)")
        self.process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "manage.py"), "qcluster"],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()  # the main process stops its own workers in order
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        say("cluster stopped")


def idle() -> bool:
    from jobs.models import Job
    from jobs.models.job import ACTIVE_STATUSES

    return not Job.objects.filter(status__in=ACTIVE_STATUSES).exists()


def first_sync(account) -> None:
    from jobs.sync.enqueue import sync_enqueue

    say("first sync (and its backfill) on the cluster")
    sync_enqueue(accounts=[account])
    wait(idle, "the first sync chain")
    time.sleep(1)
    wait(idle, "the first sync chain")


def latency(emulator, account, subject: str, *, poll: bool = False) -> float:
    """Seconds from injecting a message (and, for a poll, enqueueing the sync the schedule
    would) until its interaction exists."""
    from jobs.models import Interaction, Provider
    from jobs.sync.enqueue import sync_enqueue

    wait(idle, "the previous chain")
    body = json.dumps({"subject": subject}).encode()
    request = urllib.request.Request(
        f"{emulator.url}emulator/inject/message", data=body, method="POST"
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    if poll:
        started = time.monotonic()
        sync_enqueue(accounts=[account], providers=[Provider.GMAIL])
    wait(
        lambda: Interaction.objects.filter(user_id=account.user_id, subject=subject).exists(),
        f"the interaction {subject!r}",
        poll_s=0.01,
    )
    return time.monotonic() - started


def idle_quota(emulator, account, days: int) -> dict:
    """Quota an idle account costs over `days` simulated days: the periodic sync every tick,
    the renewal schedule every fourth, their jobs run here, time moved on between ticks."""
    from jobs.runner import run_due_jobs
    from jobs.sync.periodic import periodic_sync
    from jobs.sync.push import push_renew_due

    emulator.log.reset()
    ticks = days * 24 * 4
    for tick in range(1, ticks + 1):
        age(account, TICK)
        periodic_sync()
        if tick % 4 == 0:
            push_renew_due()
        run_due_jobs(until_empty=True)
        if tick % (24 * 4) == 0:
            say(f"  day {tick // 96}: {emulator.log.quota_units()} Gmail units so far")
    hours = days * 24
    calls: dict[str, int] = {}
    for entry in emulator.log.entries:
        if entry.route.startswith(("gmail.", "calendar.")):
            calls[entry.route] = calls.get(entry.route, 0) + 1
    calendar = sum(n for route, n in calls.items() if route.startswith("calendar."))
    return {
        "gmail_units_per_h": round(emulator.log.quota_units() / hours, 2),
        "calendar_requests_per_h": round(calendar / hours, 2),
        "calls": calls,
    }


def age(account, by: timedelta) -> None:
    """Time passes: every clock the schedules read for this account moves back `by`."""
    from django.db.models import F

    from jobs.models import PushChannel, SyncState

    SyncState.objects.filter(account=account, last_synced_at__isnull=False).update(
        last_synced_at=F("last_synced_at") - by
    )
    channels = PushChannel.objects.filter(account=account)
    for name in ("renewed_at", "expires_at", "watched_at", "notified_at", "unannounced_at"):
        channels.filter(**{f"{name}__isnull": False}).update(**{name: F(name) - by})


def stop_push(account) -> None:
    """Push switched off: the renewal schedule stops the watch and channels."""
    from jobs.runner import run_due_jobs
    from jobs.sync.push import push_renew_due

    push_renew_due()
    run_due_jobs(until_empty=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait(predicate, what: str, timeout: float = 300, poll_s: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll_s)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
