"""Issue 12, item 3: a Google fault storm during a 5,000-message Gmail and a 2,000-event Calendar
sync, on a real qcluster against the emulator (a real HTTP server), then incremental syncs of
what arrives afterwards, still in the storm.

30 % of the emulator's answers on every route the syncs use are a 429, 500, 503, a connection
reset or a 20-second stall (the client's google_request_timeout_s, 10 s by default, turns the
stall into a retryable timeout). Both syncs (their window passes, backfills and
normalizations) must still finish with every message and every event the emulator serves stored
once, as a RawEvent and as an Interaction, and no job failed.

Scale and mix are env-overridable (STORM_MESSAGES, STORM_EVENTS, STORM_PERCENT, STORM_STALL_S,
STORM_TIMEOUT_S, STORM_QUOTA_X); the default run is the issue's. Prints one FIGURES line.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Count, Sum
from google.oauth2.credentials import Credentials

from google_emulator.client import build_service
from google_emulator.generator import generate_mailbox, make_message
from google_emulator.server import GoogleEmulator
from jobs.config import PipelineConfig
from jobs.google.accounts import google_account_connect
from jobs.google.oauth import SCOPES
from jobs.models import Interaction, Job, JobStatus, RawEvent, SyncState
from jobs.models.job import ACTIVE_STATUSES
from jobs.sync.enqueue import sync_enqueue
from jobs.sync.gmail import window_query
from tests.cluster import qcluster, wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

OWNER = "storm.owner@pipeline.example"
ALIAS = "storm@pipeline.example"
MESSAGES = int(os.environ.get("STORM_MESSAGES", "5000"))
EVENTS = int(os.environ.get("STORM_EVENTS", "2000"))
PERCENT = float(os.environ.get("STORM_PERCENT", "30"))
STALL_S = float(os.environ.get("STORM_STALL_S", "20"))
TIMEOUT_S = float(os.environ.get("STORM_TIMEOUT_S", "1500"))
# Messages and events that arrive after the first syncs, for the incremental syncs that follow.
ARRIVALS = 25
# The pacer's per-user quotas, times this (Google's defaults otherwise: 6,000 Gmail units and
# 600 Calendar requests a minute). The emulator enforces no quota in this test: what is tested
# is recovery from faults, not pacing (see the load tests for that).
QUOTA_X = int(os.environ.get("STORM_QUOTA_X", "10"))
# How failed requests are paced. "ci" (the default): batch resends after 0.05-0.1 s doubling
# (google_batch_retry_base_s 0.1), a 5 s client timeout (a 20 s stall still trips it) and no
# pause between Gmail chunks, so the scale fits a CI leg. "production": the shipped
# defaults (1 s base, 10 s timeout, 0.2 s chunk pause); measured by hand, see the ops notes.
PACING = os.environ.get("STORM_PACING", "ci")
PACING_CONFIG = {
    "ci": {
        "google_batch_retry_base_s": 0.1,
        "google_request_timeout_s": 5.0,
        "gmail_chunk_pause_s": 0,
    },
    "production": {},
}[PACING]
KINDS = "429,500,503,reset,stall"
DEFAULTS = PipelineConfig()

# Every HTTP request a sync sends, and each part of a Gmail batch. A reset or stall drops the
# whole HTTP request, so inside a batch (messages.get parts) only the answer kinds apply: the
# batch rule carries the disconnects of a batch.
FAULTED_ROUTES = {
    "oauth.token": "500,503,reset,stall",
    "gmail.users.getProfile": KINDS,
    "gmail.users.settings.sendAs.list": KINDS,
    "gmail.users.messages.list": KINDS,
    "gmail.users.history.list": KINDS,
    "batch": KINDS,
    "gmail.users.messages.get": "429,500,503",
    "calendar.calendarList.list": KINDS,
    "calendar.events.list": KINDS,
}
SYNC_KINDS = (
    "gmail_sync",
    "gmail_backfill",
    "calendar_sync",
    "calendar_backfill",
    "normalize_gmail",
    "normalize_calendar",
)


def fault_spec() -> str:
    return ",".join(
        f"{route}={PERCENT:g}%:{kinds}"
        + (f":seconds={STALL_S:g}" if "stall" in kinds.split(",") else "")
        for route, kinds in FAULTED_ROUTES.items()
    )


def served_ids(emulator: GoogleEmulator, refresh_token: str, now: datetime) -> tuple[set, set]:
    """What the emulator serves the sync, read without faults: the message ids the window
    listing and backfill cover (every message but spam, trash, drafts and chats) and the
    "<calendar>/<event>" ids of every calendar's single events over the backfill horizon and
    the future window."""
    credentials = Credentials(
        token=None,
        refresh_token=refresh_token,
        token_uri=emulator.url + "token",
        client_id="storm",
        client_secret="storm",
    )
    gmail = build_service("gmail", "v1", emulator.url, credentials=credentials)
    calendar = build_service("calendar", "v3", emulator.url, credentials=credentials)
    query = window_query(
        start=now - timedelta(days=DEFAULTS.backfill_horizon_days),
        excluded=DEFAULTS.gmail_excluded_labels,
    )
    messages: set[str] = set()
    token = None
    while True:
        page = (
            gmail.users()
            .messages()
            .list(userId="me", q=query, maxResults=500, pageToken=token)
            .execute()
        )
        messages |= {ref["id"] for ref in page.get("messages", [])}
        if not (token := page.get("nextPageToken")):
            break
    events: set[str] = set()
    calendars = calendar.calendarList().list().execute()["items"]
    for entry in calendars:
        token = None
        while True:
            page = (
                calendar.events()
                .list(
                    calendarId=entry["id"],
                    singleEvents=True,
                    showDeleted=True,
                    timeMin=_rfc3339(now - timedelta(days=DEFAULTS.backfill_horizon_days)),
                    timeMax=_rfc3339(now + timedelta(days=DEFAULTS.calendar_window_future_days)),
                    maxResults=2500,
                    pageToken=token,
                )
                .execute()
            )
            events |= {f"{entry['id']}/{event['id']}" for event in page.get("items", [])}
            if not (token := page.get("nextPageToken")):
                break
    gmail.close()
    calendar.close()
    return messages, events


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_syncs_finish_exactly_through_a_google_fault_storm(user, settings):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    mailbox = generate_mailbox(
        OWNER, messages=MESSAGES, events=EVENTS, seed=12, now=now, days=25, aliases=(ALIAS,)
    )
    with GoogleEmulator(require_token=True, fault_seed=12) as emulator:
        emulator.add_mailbox(OWNER, mailbox)
        settings.GOOGLE_API_ROOT = emulator.url
        refresh_token = emulator.register_account(OWNER, aliases=(ALIAS,))
        want_messages, want_events = served_ids(emulator, refresh_token, now)
        assert len(want_messages) > 0.8 * MESSAGES and len(want_events) >= EVENTS
        emulator.log.reset()
        rules = emulator.faults.add_spec(fault_spec())
        account = google_account_connect(
            user=user,
            email=OWNER,
            refresh_token=refresh_token,
            scopes=SCOPES,
            addresses=[OWNER, ALIAS],
        )
        started = time.monotonic()
        with qcluster(
            env={"GOOGLE_API_ROOT": emulator.url},
            log_level="WARNING",
            gmail_quota_units_per_user_per_minute=DEFAULTS.gmail_quota_units_per_user_per_minute
            * QUOTA_X,
            calendar_requests_per_user_per_minute=DEFAULTS.calendar_requests_per_user_per_minute
            * QUOTA_X,
            **PACING_CONFIG,
        ):
            sync_enqueue(accounts=[account])

            def done() -> bool:
                jobs = Job.objects.filter(user=user, kind__in=SYNC_KINDS)
                kinds = set(jobs.values_list("kind", flat=True))
                return {"normalize_gmail", "normalize_calendar"} <= kinds and not jobs.filter(
                    status__in=ACTIVE_STATUSES
                ).exists()

            wait_until(done, timeout=TIMEOUT_S, what="both syncs and their normalizations")

            # Then mail and meetings arrive, and the next syncs are incremental (Gmail's
            # history.list, Calendar's syncToken), still in the storm.
            arrived = emulator.mailbox(OWNER)
            for n in range(ARRIVALS):
                want_messages.add(
                    arrived.add_message(
                        make_message(
                            from_="Dana Reyes <dana@northwind.example>",
                            to=OWNER,
                            subject=f"Arrived during the storm {n}",
                            date=datetime.now(UTC).replace(microsecond=0),
                        ).raw,
                        label_ids=["INBOX"],
                    )
                )
                start = now + timedelta(days=1, hours=n)
                event = arrived.add_event(
                    OWNER,
                    {
                        "summary": f"Booked during the storm {n}",
                        "start": {"dateTime": _rfc3339(start)},
                        "end": {"dateTime": _rfc3339(start + timedelta(minutes=30))},
                    },
                )
                want_events.add(f"{OWNER}/{event['id']}")
            first_round = set(Job.objects.filter(user=user).values_list("id", flat=True))
            sync_enqueue(accounts=[account])

            def caught_up() -> bool:
                jobs = Job.objects.filter(user=user, kind__in=SYNC_KINDS)
                later = set(jobs.exclude(id__in=first_round).values_list("kind", flat=True))
                return {"gmail_sync", "calendar_sync"} <= later and not jobs.filter(
                    status__in=ACTIVE_STATUSES
                ).exists()

            wait_until(caught_up, timeout=TIMEOUT_S, what="the incremental syncs")
            duration_s = time.monotonic() - started
        log = emulator.log.entries
        injected = emulator.faults.kind_hits()

    jobs = Job.objects.filter(user=user, kind__in=SYNC_KINDS)
    stored = Counter(RawEvent.objects.filter(user=user).values_list("provider", flat=True))
    gmail_ids = set(
        RawEvent.objects.filter(user=user, provider="gmail").values_list("source_id", flat=True)
    )
    event_ids = set(
        RawEvent.objects.filter(user=user, provider="calendar").values_list("source_id", flat=True)
    )
    interactions = Counter(Interaction.objects.filter(user=user).values_list("source", flat=True))
    duplicates = (
        Interaction.objects.filter(user=user)
        .values("source", "source_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    per_kind: Counter[str] = Counter()
    for kinds in injected.values():
        per_kind.update(kinds)
    answered = Counter(entry.route for entry in log)
    job_retries = jobs.aggregate(n=Sum("attempts"))["n"] - jobs.count()
    figures = {
        "messages": len(want_messages),
        "events": len(want_events),
        "faultPercent": PERCENT,
        "stallS": STALL_S,
        "pacing": PACING,
        "clientTimeoutS": PACING_CONFIG.get(
            "google_request_timeout_s", DEFAULTS.google_request_timeout_s
        ),
        "messagesGetResent": answered["gmail.users.messages.get"] - len(want_messages),
        "durationS": round(duration_s, 1),
        "requests": len(log),
        "requestsByRoute": dict(answered),
        "faultsInjected": sum(per_kind.values()),
        "faultsByKind": dict(per_kind),
        "faultsByRoute": {route: sum(kinds.values()) for route, kinds in injected.items()},
        "jobs": jobs.count(),
        "jobsByStatus": dict(Counter(jobs.values_list("status", flat=True))),
        "jobRetries": job_retries,
        "rawEvents": dict(stored),
        "interactions": dict(interactions),
        "duplicateInteractions": duplicates,
    }
    print("FIGURES: " + json.dumps(figures, sort_keys=True))

    # The mix reached every route the syncs used, with every kind it was given.
    used = {entry.route for entry in log}
    assert used <= set(FAULTED_ROUTES), used - set(FAULTED_ROUTES)
    for rule in rules:
        assert rule.route in used, f"{rule.route}: not used by the syncs"
        # A route called 20 times or more has all but surely (0.7 ** 20 < 0.1 %) been hit.
        assert rule.hits > 0 or rule.seen < 20, f"{rule.route}: no fault in {rule.seen} calls"
    for kind in KINDS.split(","):
        assert per_kind[kind] > 0, kind
    assert 0.25 <= sum(per_kind.values()) / len(log) <= 0.35
    # Nothing failed; everything served is stored once.
    missing = sorted(want_messages - gmail_ids) + sorted(want_events - event_ids)
    states = SyncState.objects.filter(account__user=user).exclude(failures={})
    assert not missing, (missing[:20], {s.resource_id: s.failures for s in states})
    assert not jobs.exclude(status=JobStatus.SUCCEEDED).exists()
    assert gmail_ids == want_messages
    assert event_ids == want_events
    assert stored == {"gmail": len(want_messages), "calendar": len(want_events)}
    assert interactions == stored
    assert duplicates == 0
    interaction_ids = set(
        Interaction.objects.filter(user=user, source="gmail").values_list("source_id", flat=True)
    )
    assert interaction_ids == gmail_ids
