"""A whole pipeline against the Google emulator (a real HTTP server), for the chaos tests: the
mailbox, the account, what the emulator's contents should become (the expected rows), and
counting what a run stored."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as dtime
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import close_old_connections

from contacts.models import Contact, ContactIdentity, InteractionParticipant
from google_emulator.generator import GeneratedMailbox, generate_mailbox
from google_emulator.server import GoogleEmulator
from jobs.config import get_config
from jobs.google.accounts import google_account_connect
from jobs.models import GoogleAccount, Interaction, Job, JobStatus, RawEvent
from jobs.models.job import ACTIVE_STATUSES
from jobs.runner import run_due_jobs, tick
from jobs.sync.gmail import excluded_label_ids
from search.models import Embedding, SearchDocument
from tests.fixtures.accounts import CALENDAR_READONLY, GMAIL_READONLY
from timeline.models import TimelineEvent

OWNER = "chaos.owner@pipeline.example"
ALIAS = "chaos@pipeline.example"
# Scale, overridable: CHAOS_MESSAGES / CHAOS_EVENTS.
MESSAGES = int(os.environ.get("CHAOS_MESSAGES", "150"))
EVENTS = int(os.environ.get("CHAOS_EVENTS", "20"))
SEED = 12


@cache
def mailbox() -> GeneratedMailbox:
    """The same mailbox for every run of the session: anchored at noon today, 25 days of mail
    (inside the first sync's 30-day window), so it is all in the first pass."""
    anchor = datetime.combine(datetime.now(UTC).date(), dtime(12, 0), tzinfo=UTC)
    return generate_mailbox(
        OWNER, messages=MESSAGES, events=EVENTS, seed=SEED, now=anchor, days=25, aliases=(ALIAS,)
    )


def serve(emulator: GoogleEmulator) -> None:
    emulator.add_mailbox(OWNER, mailbox())


def connect(emulator: GoogleEmulator, username: str) -> GoogleAccount:
    user = get_user_model().objects.create_user(username, email=f"{username}@example.com")
    return google_account_connect(
        user=user,
        email=OWNER,
        refresh_token=emulator.register_account(OWNER, aliases=(ALIAS,)),
        addresses=[OWNER, ALIAS],
        scopes=[GMAIL_READONLY, CALENDAR_READONLY],
    )


def expected_gmail_ids(emulator: GoogleEmulator) -> set[str]:
    """The emulator's messages a sync stores: all but those under an excluded label."""
    excluded = excluded_label_ids(get_config())
    return {m.id for m in emulator.mailbox(OWNER).newest_first() if not excluded & set(m.label_ids)}


def emulator_event_ids(emulator: GoogleEmulator) -> set[str]:
    """Every event id the emulator's calendars hold (a recurring event's instances are
    "<id>_<start>" of one of them)."""
    return {
        f"{calendar.id}/{event['id']}"
        for calendar in emulator.mailbox(OWNER).calendars()
        for event in calendar.events()
    }


def stored(user_id: int) -> dict[str, Any]:
    """What the pipeline stored for the user, counted, plus the raw events' source ids."""
    raw = RawEvent.objects.filter(user_id=user_id)
    live = Contact.objects.filter(user_id=user_id, merged_into__isnull=True)
    return {
        "gmailIds": sorted(raw.filter(provider="gmail").values_list("source_id", flat=True)),
        "calendarIds": sorted(raw.filter(provider="calendar").values_list("source_id", flat=True)),
        "rawEvents": raw.count(),
        "rawByStatus": dict(Counter(raw.values_list("status", flat=True))),
        "interactions": Interaction.objects.filter(user_id=user_id).count(),
        "contacts": live.count(),
        "contactsWithoutIdentity": live.filter(identities__isnull=True).count(),
        "identities": ContactIdentity.objects.filter(user_id=user_id).count(),
        "participants": InteractionParticipant.objects.filter(user_id=user_id).count(),
        "timelineEvents": TimelineEvent.objects.filter(user_id=user_id).count(),
        "searchDocuments": SearchDocument.objects.filter(user_id=user_id).count(),
        "embeddings": Embedding.objects.filter(user_id=user_id).count(),
    }


COUNTED = (
    "rawEvents",
    "interactions",
    "contacts",
    "identities",
    "participants",
    "timelineEvents",
    "searchDocuments",
    "embeddings",
)


_reference: dict[str, Any] = {}


def reference(emulator: GoogleEmulator, pipeline_config: Callable[..., None]) -> dict[str, Any]:
    """What the emulator's contents become through the whole chain with nothing killed: one run
    in this process (run_due_jobs) for a user of its own, once per session (the mailbox is the
    same every time)."""
    if not _reference:
        from jobs.sync.enqueue import sync_enqueue

        account = connect(emulator, "reference")
        # Run here only: nothing handed to a broker (a cluster would find these jobs done).
        pipeline_config(handoff="none")
        sync_enqueue(accounts=[account])
        started = time.monotonic()
        run_due_jobs(until_empty=True)
        pipeline_config(handoff="django_q")
        jobs = Counter(Job.objects.filter(user_id=account.user_id).values_list("status", flat=True))
        assert set(jobs) == {JobStatus.SUCCEEDED}, jobs
        _reference.update(stored(account.user_id), seconds=round(time.monotonic() - started, 1))
        assert _reference["gmailIds"] == sorted(expected_gmail_ids(emulator))
    return _reference


def idle(user_id: int) -> bool:
    return not Job.objects.filter(user_id=user_id, status__in=ACTIVE_STATUSES).exists()


def wait_idle_ticking(
    user_id: int,
    *,
    timeout: float,
    every_s: float = 1.0,
    on_tick: Callable[[int], None] | None = None,
) -> int:
    """Wait for the user's jobs to finish, running tick() every `every_s` as the schedule would
    (it runs once a minute); returns how many leases tick returned meanwhile."""
    returned = 0
    end = time.monotonic() + timeout
    while True:
        close_old_connections()
        expired = tick().leases_expired
        if expired and on_tick is not None:
            on_tick(expired)
        returned += expired
        if idle(user_id):
            return returned
        if time.monotonic() > end:
            left = list(
                Job.objects.filter(user_id=user_id, status__in=ACTIVE_STATUSES).values_list(
                    "id", "kind", "status", "attempts"
                )
            )
            raise AssertionError(f"jobs still active after {timeout:.0f} s: {left}")
        time.sleep(every_s)


@dataclass
class Outcome:
    """The user's jobs after a run."""

    statuses: dict[str, int]
    lost: list[dict[str, Any]]  # jobs whose error history holds a lost attempt


def outcome(user_id: int) -> Outcome:
    jobs = Job.objects.filter(user_id=user_id)
    lost = [
        {"id": job.pk, "kind": job.kind, "attempts": job.attempts, "errors": job.errors}
        for job in jobs
        if any("lease expired" in error.get("error", "") for error in job.errors)
    ]
    return Outcome(dict(Counter(jobs.values_list("status", flat=True))), lost)
