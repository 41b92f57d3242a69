"""The demo: a generated mailbox in an in-process Google emulator, synced through the whole chain.

Used by `manage.py demo` (the README's first command). Everything real but Google: the database,
the job engine, django-q2 workers (a `qcluster` subprocess) and google-api-python-client talking
HTTP to the emulator.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from contacts.models import Contact, InteractionParticipant, MergeSuggestion, SuggestionStatus
from crm_pipeline.embedded_db import database_url
from google_emulator.generator import generate_mailbox
from google_emulator.server import GoogleEmulator
from insights.selectors import insights_summary
from jobs.google.accounts import google_account_connect
from jobs.google.oauth import SCOPES
from jobs.models import GoogleAccount, Interaction, Job, JobStatus, RawEvent
from jobs.models.job import ACTIVE_STATUSES
from jobs.normalization.selectors import normalization_summary
from jobs.runner import run_due_jobs
from jobs.sync.enqueue import sync_enqueue
from search.models import Embedding, SearchDocument
from search.selectors import SearchError, interaction_search
from timeline.selectors import timeline_summary

DEMO_USERNAME = "demo"
DEMO_EMAIL = "demo.owner@pipeline.example"
DEMO_ALIAS = "demo@pipeline.example"
# The summary's search example: a paraphrase (the mailbox says "Security questionnaire").
SEARCH_EXAMPLE = "the customer's security review questions"
REPO_ROOT = Path(__file__).resolve().parent.parent

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    messages: int = 1000
    events: int = 60
    seed: int = 42
    workers: str = "cluster"  # "cluster" (a qcluster subprocess) | "inline" (this process)
    timeout_s: float = 600.0


def demo_run(*, options: DemoOptions, say: Say) -> dict[str, Any]:
    """Run the demo end to end and return its summary (the command prints it as JSON)."""
    started = time.monotonic()
    user = get_user_model().objects.get_or_create(
        username=DEMO_USERNAME, defaults={"email": DEMO_EMAIL}
    )[0]
    existing = GoogleAccount.objects.filter(user=user, email=DEMO_EMAIL).first()
    # The mailbox is anchored to the day the demo account was created, so a later run serves
    # the very same messages and events, and re-running inserts nothing.
    anchor_day = (existing.created_at if existing else datetime.now(UTC)).date()
    anchor = datetime.combine(anchor_day, dtime(12, 0), tzinfo=UTC)
    say(f"generating a mailbox of {options.messages} messages and {options.events} events")
    mailbox = generate_mailbox(
        DEMO_EMAIL,
        messages=options.messages,
        events=options.events,
        seed=options.seed,
        now=anchor,
        days=25,  # inside the 30-day first-sync window
        aliases=(DEMO_ALIAS,),
    )
    before = _counts(user.pk)
    # Every job the demo starts comes after this one: the sync chains, their later stages and
    # the backfill chains (a batch of their own each).
    first_job = (Job.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    with GoogleEmulator(require_token=True) as emulator:
        emulator.add_mailbox(DEMO_EMAIL, mailbox)
        settings.GOOGLE_API_ROOT = emulator.url
        say(f"Google API emulator serving {DEMO_EMAIL} at {emulator.url}")
        refresh_token = emulator.register_account(DEMO_EMAIL, aliases=(DEMO_ALIAS,))
        account = google_account_connect(
            user=user,
            email=DEMO_EMAIL,
            refresh_token=refresh_token,
            scopes=SCOPES,
            addresses=[DEMO_EMAIL, DEMO_ALIAS],
        )
        enqueued = sync_enqueue(accounts=[account])
        batch_id = enqueued[0].job.batch_id
        for item in enqueued:
            state = "enqueued" if item.created else "already active"
            say(f"{item.kind}: job #{item.job.pk} {state}, batch {batch_id}")
        with _workers(options.workers, emulator.url, say):
            _follow(user.pk, first_job, options, say)
    return _summary(user.pk, first_job, batch_id, before, started)


@contextmanager
def _workers(mode: str, api_root: str, say: Say) -> Iterator[None]:
    if mode == "inline":
        yield
        return
    env = dict(
        os.environ, GOOGLE_API_ROOT=api_root, DATABASE_URL=database_url(connection.settings_dict)
    )
    env.setdefault("DJANGO_SETTINGS_MODULE", os.environ.get("DJANGO_SETTINGS_MODULE", ""))
    # A SIGTERM or SIGHUP to the demo (a CI timeout, a closed terminal) unwinds through the
    # `finally` below like Ctrl-C does, so the cluster (a session of its own) never outlives it.
    previous = {
        signum: signal.signal(signum, _raise_system_exit)
        for signum in (signal.SIGTERM, signal.SIGHUP)
        if threading.current_thread() is threading.main_thread()
    }
    cluster: subprocess.Popen[bytes] | None = None
    try:
        cluster = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "manage.py"), "qcluster"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        say(f"starting a django-q2 cluster (manage.py qcluster, 2 workers, pid {cluster.pid})")
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if cluster is not None:
            _stop_cluster(cluster, say)


def _stop_cluster(cluster: subprocess.Popen[bytes], say: Say) -> None:
    cluster.terminate()  # the cluster's main process stops its workers in order
    try:
        cluster.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(cluster.pid, signal.SIGKILL)  # the cluster and its workers
        cluster.wait()
    say("cluster stopped")


def _raise_system_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _demo_jobs(user_id: int, first_job: int) -> Any:
    return Job.objects.filter(user_id=user_id, id__gte=first_job)


def _follow(user_id: int, first_job: int, options: DemoOptions, say: Say) -> None:
    """Wait for every job the demo started (the syncs, the stages they start, the backfills) to
    finish, with a progress line per stage whenever its jobs or its figure change."""
    started = time.monotonic()
    deadline = started + options.timeout_s
    shown: dict[str, str] = {}
    while True:
        if options.workers == "inline":
            run_due_jobs(until_empty=True)
        jobs = list(_demo_jobs(user_id, first_job).values_list("kind", "status"))
        for kind, line in _stage_lines(jobs, user_id).items():
            if shown.get(kind) != line:
                say(f"  {time.monotonic() - started:6.1f} s  {line}")
                shown[kind] = line
        if jobs and not any(status in ACTIVE_STATUSES for _, status in jobs):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo's jobs did not finish within {options.timeout_s:.0f} s")
        time.sleep(0.5)


# What each stage has produced so far, for its progress line (the user's rows).
_STAGE_FIGURES: dict[str, tuple[str, Callable[[int], object]]] = {
    "gmail_sync": ("raw events", lambda u: RawEvent.objects.filter(user_id=u).count()),
    "normalize_gmail": ("interactions", lambda u: Interaction.objects.filter(user_id=u).count()),
    "extract_contacts": (
        "contacts",
        lambda u: Contact.objects.filter(user_id=u, merged_into__isnull=True).count(),
    ),
    "write_timeline": ("timeline events", lambda u: timeline_summary(user_id=u)["timelineEvents"]),
    "embed": ("vectors", lambda u: Embedding.objects.filter(user_id=u).count()),
    "generate_insights": ("insights", lambda u: insights_summary(user_id=u)["insights"]),
}


def _stage_lines(jobs: list[tuple[str, str]], user_id: int) -> dict[str, str]:
    """One line per stage that has jobs: its jobs by status and, where it has one, its figure."""
    per_kind: dict[str, Counter[str]] = {}
    for kind, status in jobs:
        per_kind.setdefault(kind, Counter())[status] += 1
    lines = {}
    for kind, counts in per_kind.items():
        line = f"{kind:<18} " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        if kind in _STAGE_FIGURES:
            label, figure = _STAGE_FIGURES[kind]
            line += f" | {label}: {figure(user_id)}"
        lines[kind] = line
    return lines


def _counts(user_id: int) -> dict[str, int]:
    return {
        "rawEvents": RawEvent.objects.filter(user_id=user_id).count(),
        "interactions": Interaction.objects.filter(user_id=user_id).count(),
        "contacts": Contact.objects.filter(user_id=user_id, merged_into__isnull=True).count(),
    }


def _summary(
    user_id: int, first_job: int, batch_id: uuid.UUID, before: dict[str, int], started: float
) -> dict[str, Any]:
    after = _counts(user_id)
    statuses = Counter(_demo_jobs(user_id, first_job).values_list("status", flat=True))
    normalized = normalization_summary(user_id=user_id)
    return {
        "rawEvents": after["rawEvents"],
        "interactions": after["interactions"],
        "failedNormalizations": normalized["failedNormalizations"],
        "pendingRawEvents": normalized["pendingRawEvents"],
        "rawEventsInserted": after["rawEvents"] - before["rawEvents"],
        "interactionsInserted": after["interactions"] - before["interactions"],
        "contacts": after["contacts"],
        "participants": InteractionParticipant.objects.filter(user_id=user_id).count(),
        "mergeSuggestions": MergeSuggestion.objects.filter(
            user_id=user_id, status=SuggestionStatus.PENDING
        ).count(),
        **timeline_summary(user_id=user_id),
        "searchDocuments": SearchDocument.objects.filter(user_id=user_id).count(),
        "embeddings": Embedding.objects.filter(user_id=user_id).count(),
        **insights_summary(user_id=user_id),
        "searchExample": _search_example(user_id),
        "jobsSucceeded": statuses.get(JobStatus.SUCCEEDED, 0),
        "jobsFailed": statuses.get(JobStatus.FAILED, 0),
        "batchId": str(batch_id),
        "durationMs": int((time.monotonic() - started) * 1000),
    }


def _search_example(user_id: int) -> dict[str, Any]:
    """One hybrid search over the demo mailbox: the query and its three best hits."""
    try:
        results = interaction_search(user=user_id, query=SEARCH_EXAMPLE, limit=3)
    except SearchError as exc:
        return {"query": SEARCH_EXAMPLE, "error": str(exc)}
    return {
        "query": SEARCH_EXAMPLE,
        "mode": results.mode,
        "hits": [
            {"subject": hit.subject, "fusedScore": round(hit.fused_score, 4)} for hit in results
        ],
    }


def summary_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, separators=(",", ":"))
