"""Long provider ids: Google Calendar event ids are up to 1,024 characters (events.insert: 5 to
1,024 characters of base32hex), instances of a recurring event add "_<start>" to their series'
id, and a raw event's source id is "<calendar id>/<event id>". Every column that holds such an
id (raw events, interactions, the interaction's thread id: a series id) keeps up to
SOURCE_ID_MAX_LENGTH characters; an item whose id is longer still fails alone, recorded."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from jobs.enqueue import enqueue
from jobs.models import (
    GoogleAccount,
    Interaction,
    Job,
    JobStatus,
    RawEvent,
    ReconcileRun,
    ReconcileStatus,
    SyncState,
)
from jobs.models.raw_event import SOURCE_ID_MAX_LENGTH
from jobs.runner import run_due_jobs, run_job
from jobs.sync.raw_events import RawItem, raw_events_upsert
from tests.fixtures.emulator import OWNER

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("wide_sync_config")]

# A group calendar's address as Google makes them ("c_" + 64 hex digits).
GROUP = "c_" + "5f3a9c0e7b21d4" * 4 + "6e0a9c2b" + "@group.calendar.google.com"
BASE32HEX = "0123456789abcdefghijklmnopqrstuv"


def long_id(length: int, seed: int = 0) -> str:
    """A base32hex event id of `length` characters (Google accepts 5 to 1,024)."""
    return "".join(BASE32HEX[(seed + i * 7) % 32] for i in range(length))


def event(event_id: str, summary: str, *, days: int = 3, **extra: object) -> dict:
    start = datetime.now(UTC).replace(microsecond=0, second=0, minute=0) + timedelta(days=days)
    return {
        "id": event_id,
        "summary": summary,
        "start": {"dateTime": start.isoformat()},
        "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
        "attendees": [{"email": "dana@northwind.example", "responseStatus": "accepted"}],
        **extra,
    }


def sync(account: GoogleAccount) -> Job:
    job = enqueue("calendar_sync", user=account.user_id, payload={"account_id": account.pk})
    run_job(job.pk)
    job.refresh_from_db()
    return job


def normalize() -> None:
    run_due_jobs(kinds=["normalize_calendar"], until_empty=True)


def test_an_event_with_a_1024_character_id_on_a_group_calendar_is_synced_and_normalized(
    google_account, emulator
):
    mailbox = emulator.mailbox()
    mailbox.add_calendar(GROUP, "Northwind projects")
    longest = long_id(1024)
    series = long_id(1024, seed=5)
    mailbox.add_event(GROUP, event(longest, "Steering committee"))
    mailbox.add_event(GROUP, event("shortid01", "Kick-off", days=4))
    mailbox.add_event(
        GROUP,
        event(series, "Weekly sync", days=1, recurrence=["RRULE:FREQ=WEEKLY;COUNT=2"]),
    )

    job = sync(google_account)

    assert job.status == JobStatus.SUCCEEDED, job.errors
    stored = RawEvent.objects.filter(user_id=google_account.user_id, provider="calendar")
    # The emulator served the ids intact over HTTP, as Google does; an instance's id is its
    # series' id plus "_<start>", so longer than 1,024 characters.
    instances = [
        i for i in stored.values_list("payload__id", flat=True) if i.startswith(f"{series}_")
    ]
    assert len(instances) == 2 and all(len(i) == 1024 + 17 for i in instances)
    source_id = f"{GROUP}/{longest}"
    assert len(source_id) == 1117
    assert stored.filter(source_id=source_id, payload__id=longest).exists()
    assert stored.filter(source_id=f"{GROUP}/shortid01").exists()
    assert stored.filter(source_id__in=[f"{GROUP}/{i}" for i in instances]).count() == 2

    normalize()

    assert not stored.filter(status="failed").exists()
    meeting = Interaction.objects.get(user_id=google_account.user_id, source_id=source_id)
    assert meeting.subject == "Steering committee"
    weekly = Interaction.objects.filter(user_id=google_account.user_id, thread_id=series)
    assert weekly.count() == 2


def test_an_id_beyond_the_bound_fails_alone_with_its_reason_recorded(
    google_account, emulator, wide_sync_config
):
    """Google's ids cannot reach the bound through a calendar of ours; an id the emulator is
    made to serve beyond it (as a store of imported events could) must not cost its page."""
    mailbox = emulator.mailbox()
    mailbox.add_calendar(GROUP, "Northwind projects")
    too_long = long_id(SOURCE_ID_MAX_LENGTH)  # with the calendar id: over the bound
    mailbox.calendar(GROUP).put(event(too_long, "Unstorable"), touch=True)
    mailbox.add_event(GROUP, event("shortid02", "Stored all the same"))

    job = sync(google_account)

    assert job.status == JobStatus.SUCCEEDED, job.errors
    rows = RawEvent.objects.filter(user_id=google_account.user_id, source_id__startswith=GROUP)
    assert list(rows.values_list("source_id", flat=True)) == [f"{GROUP}/shortid02"]
    assert job.metrics["details"]["itemsRejected"] == 1
    state = SyncState.objects.get(account=google_account, provider="calendar", resource_id=GROUP)
    failure = state.failures[f"{GROUP}/{too_long}"]
    assert f"limit {SOURCE_ID_MAX_LENGTH}" in failure["error"]
    assert failure["retryAt"] is None  # it will never fit: not retried
    # The calendar itself is not marked failed: it keeps syncing.
    assert GROUP not in state.failures and state.cursor

    again = sync(google_account)
    assert again.status == JobStatus.SUCCEEDED
    # Reconciliation leaves it out (it can never be stored): no gap, and it says why.
    wide_sync_config(reconcile_settle_minutes=0)
    call_command("reconcile", "ada", "--provider", "calendar", stdout=StringIO())
    run = ReconcileRun.objects.get(account=google_account, provider="calendar")
    assert (run.status, run.missing_count) == (ReconcileStatus.OK, 0)
    assert run.detail.startswith("1 listed item(s) have ids too long to store")


def test_the_upsert_stores_the_others_and_names_the_rejected_ids(account):
    fits = RawItem(source_id="x" * SOURCE_ID_MAX_LENGTH, occurred_at=None, payload={"a": 1})
    # Counted in UTF-8 bytes, so the unique index entry stays under btree's limit.
    wide = RawItem(source_id="é" * (SOURCE_ID_MAX_LENGTH // 2 + 1), occurred_at=None, payload={})
    over = RawItem(source_id="y" * (SOURCE_ID_MAX_LENGTH + 1), occurred_at=None, payload={})

    counts = raw_events_upsert(
        user_id=account.user_id,
        account_id=account.pk,
        provider="calendar",
        batch_id=uuid.uuid4(),
        items=[fits, wide, over],
    )

    assert (counts.inserted, counts.updated, counts.skipped) == (1, 0, 0)
    assert sorted(counts.rejected) == sorted([wide.source_id, over.source_id])
    assert list(RawEvent.objects.values_list("source_id", flat=True)) == [fits.source_id]


def test_an_ics_import_keeps_a_1024_character_id_and_stores_a_longer_uid_under_a_digest(
    account, tmp_path
):
    """A Takeout .ics keeps Google's own ids (UID "<event id>@google.com") up to Google's 1,024
    characters; a longer UID is stored under a digest id (jobs.sync.convert), never lost."""
    fits, over = long_id(1024), long_id(SOURCE_ID_MAX_LENGTH, seed=3)
    vevents = "".join(
        f"BEGIN:VEVENT\r\nUID:{uid}@google.com\r\nDTSTART:2025030{n}T150000Z\r\n"
        f"SUMMARY:Meeting {n}\r\nEND:VEVENT\r\n"
        for n, uid in enumerate([fits, over, "shortid03"], start=1)
    )
    path = tmp_path / "calendar.ics"
    path.write_text(f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{vevents}END:VCALENDAR\r\n")
    out = StringIO()

    call_command("import_ics", "ada", str(path), stdout=out, stderr=StringIO())

    metrics = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (metrics["itemsFetched"], metrics["itemsInserted"]) == (3, 3)
    rows = {row.payload["summary"]: row for row in RawEvent.objects.all()}
    assert rows["Meeting 1"].payload["id"] == fits
    assert rows["Meeting 1"].source_id == f"{OWNER}/{fits}"
    assert rows["Meeting 2"].payload["iCalUID"] == f"{over}@google.com"
    assert len(rows["Meeting 2"].payload["id"]) < 1024
