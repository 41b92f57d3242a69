"""Normalization writes: exact counts, idempotence, failures kept, direction, calendar, scoping."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection, transaction

from google_emulator.generator import make_message
from jobs.models import GoogleAccount, Interaction, RawEvent
from jobs.normalization import services
from jobs.normalization.selectors import normalization_summary
from jobs.normalization.services import (
    raw_events_normalize,
    raw_events_normalize_chunk,
    raw_events_reset,
)
from jobs.sync.convert import (
    calendar_events_from_ics,
    gmail_message_from_rfc822,
    iter_mbox,
)
from jobs.sync.raw_events import RawItem, raw_events_upsert
from tests.fixtures.emulator import OWNER

pytestmark = pytest.mark.django_db

CALENDAR = OWNER  # the primary calendar is named after its owner


@pytest.fixture(scope="module")
def messages(generated_messages) -> list[dict]:
    """The generated mailbox's 300 messages as Gmail format=full resources."""
    return list(generated_messages)


def store(user, payloads, *, provider="gmail", batch_id=None, account=None) -> uuid.UUID:
    """Pending raw events as the sync stage leaves them (calendar ids from `_calendarId`)."""
    batch_id = batch_id or uuid.uuid4()
    RawEvent.objects.bulk_create(
        RawEvent(
            user=user,
            account=account,
            provider=provider,
            source_id=f"{p['_calendarId']}/{p['id']}" if provider == "calendar" else p["id"],
            payload=p,
            batch_id=batch_id,
        )
        for p in payloads
    )
    return batch_id


def normalize(user, provider="gmail", **kwargs):
    return raw_events_normalize(user_id=user.pk, provider=provider, **kwargs)


def counts(report) -> tuple[int, int, int, int, int]:
    return report.fetched, report.inserted, report.updated, report.unchanged, report.failed


def resync(user, source_id: str, payload: dict) -> None:
    """What the sync stage does with a changed item: new payload, back to pending."""
    RawEvent.objects.filter(user=user, source_id=source_id).update(
        payload=payload, status="pending", error=""
    )


def snapshot(user) -> list[tuple]:
    return list(Interaction.objects.filter(user=user).order_by("source_id").values_list())


def test_a_chunk_reports_exact_inserted_updated_and_unchanged_counts(user, account, messages):
    store(user, messages[:30], account=account)
    assert counts(normalize(user)) == (30, 30, 0, 0, 0)

    relabelled = [{**m, "labelIds": [*m["labelIds"], "STARRED"]} for m in messages[:2]]
    for message in relabelled:
        resync(user, message["id"], message)
    RawEvent.objects.filter(source_id__in=[m["id"] for m in messages[2:7]]).update(status="pending")
    store(user, messages[30:33], account=account)

    assert counts(normalize(user)) == (10, 3, 2, 5, 0)
    assert Interaction.objects.filter(user=user).count() == 33
    assert set(RawEvent.objects.values_list("status", flat=True)) == {"normalized"}


def test_normalizing_twice_gives_the_same_rows_and_reports_nothing_new(user, account, messages):
    store(user, messages, account=account)
    first = normalize(user, chunk_size=64)
    rows = snapshot(user)

    assert raw_events_reset(user_id=user.pk, providers=["gmail"]) == len(messages)
    second = normalize(user, chunk_size=64)

    assert counts(first) == (300, 300, 0, 0, 0)
    assert (first.chunks, second.chunks) == (5, 5)
    assert counts(second) == (300, 0, 0, 300, 0)
    # not even updated_at moved: unchanged rows are not rewritten
    assert snapshot(user) == rows


def test_a_label_change_on_one_payload_updates_exactly_one_interaction(user, account, messages):
    store(user, messages[:20], account=account)
    normalize(user)
    before = Interaction.objects.get(source_id=messages[5]["id"])

    raw_events_reset(user_id=user.pk, providers=["gmail"])
    resync(user, messages[5]["id"], {**messages[5], "labelIds": ["Label_1"]})

    assert counts(normalize(user)) == (20, 0, 1, 19, 0)
    after = Interaction.objects.get(source_id=messages[5]["id"])
    assert (after.pk, after.created_at) == (before.pk, before.created_at)
    assert after.metadata["labels"] == ["Label_1"]
    assert after.updated_at > before.updated_at


@pytest.mark.parametrize("size", [10, 200])
def test_queries_per_chunk_stay_constant_as_the_chunk_grows(
    size, user, account, messages, django_assert_max_num_queries
):
    store(user, messages[:size], account=account)
    # accounts, savepoint, claim, write (interactions + raw-event outcomes), release
    with django_assert_max_num_queries(5):
        report = raw_events_normalize_chunk(user_id=user.pk, provider="gmail", chunk_size=size)
    assert counts(report) == (size, size, 0, 0, 0)


def test_a_payload_that_breaks_the_parser_is_kept_failed_and_the_others_are_normalized(
    user, account, messages, monkeypatch
):
    real_parse = services.parse_gmail_message

    def parse(message, **kwargs):
        if isinstance(message, dict) and message.get("id") == messages[1]["id"]:
            raise ValueError("boom")
        return real_parse(message, **kwargs)

    monkeypatch.setattr(services, "parse_gmail_message", parse)
    store(user, [*messages[:4], {"id": "x"}], account=account)
    RawEvent.objects.create(user=user, provider="gmail", source_id="list", payload=["a", "list"])

    assert counts(normalize(user)) == (6, 3, 0, 0, 3)
    failed = dict(RawEvent.objects.filter(status="failed").values_list("source_id", "error"))
    assert failed == {
        "x": "NormalizationError: message x has no payload (not format=full)",
        "list": "NormalizationError: message is a list, not an object",
        messages[1]["id"]: "ValueError: boom",
    }
    assert RawEvent.objects.get(source_id="x").payload == {"id": "x"}  # raw data kept
    assert Interaction.objects.filter(user=user).count() == 3


def test_a_row_too_wide_for_its_column_fails_on_its_own(user):
    events = [
        timed_event("ok"),
        timed_event("long", recurringEventId="r" * 2049),
        # Few characters but many bytes: an index row is bounded in bytes.
        timed_event("wide", recurringEventId="é" * 1100),
    ]
    store(user, events, provider="calendar")

    assert counts(normalize(user, "calendar")) == (3, 1, 0, 0, 2)
    errors = sorted(RawEvent.objects.filter(status="failed").values_list("error", flat=True))
    assert errors[0] == "NormalizationError: thread_id is 2049 characters long (limit 2048)"
    assert errors[1].startswith(
        "NormalizationError: thread_id: id too long to store: 1100 characters, 2200 bytes "
        "(limit 2048 bytes)"
    )


def test_mail_from_a_send_as_alias_is_outbound(user, account):
    sent = mail("Alex <alex@pipeline.example>", "Jo Client <jo@client.example>", "Proposal")
    received = mail("Jo Client <jo@client.example>", f"Alex <{OWNER}>", "Re: Proposal")
    store(user, [sent, received], account=account)

    normalize(user)

    kinds = dict(Interaction.objects.values_list("subject", "kind"))
    assert kinds == {"Proposal": "email_outbound", "Re: Proposal": "email_inbound"}
    assert Interaction.objects.get(subject="Proposal").direction == "outbound"


def test_raw_events_without_an_account_use_all_the_users_addresses(user, account):
    GoogleAccount.objects.create(user=user, email="alex@other.example", addresses=[])
    sent = mail("alex@other.example", "Jo Client <jo@client.example>", "From the other account")
    also_sent = mail("Alex <alex@pipeline.example>", "jo@client.example", "From the alias")
    store(user, [sent, also_sent])

    normalize(user)

    assert set(Interaction.objects.values_list("kind", flat=True)) == {"email_outbound"}


def test_a_message_deleted_at_gmail_keeps_its_interaction_marked_deleted(user, account, messages):
    store(user, messages[:3], account=account)
    normalize(user)
    resync(user, messages[0]["id"], {**messages[0], "_deleted": True})

    assert counts(normalize(user)) == (1, 0, 1, 0, 0)
    assert Interaction.objects.get(source_id=messages[0]["id"]).metadata["deleted"] is True


def test_two_raw_events_naming_one_interaction_write_it_once(user, account, messages):
    store(user, [messages[0]], account=account)
    RawEvent.objects.bulk_create(
        [RawEvent(user=user, provider="gmail", source_id="copy", payload=messages[0])]
    )

    assert counts(normalize(user)) == (2, 1, 0, 1, 0)


def timed_event(event_id: str, **extra) -> dict:
    return {
        "kind": "calendar#event",
        "id": event_id,
        "status": "confirmed",
        "summary": "Pipeline review",
        "description": "Agenda: <b>renewal</b>",
        "start": {"dateTime": "2026-03-01T10:00:00-08:00", "timeZone": "America/Los_Angeles"},
        "end": {"dateTime": "2026-03-01T11:30:00-08:00", "timeZone": "America/Los_Angeles"},
        "attendees": [
            {"email": OWNER, "self": True, "responseStatus": "accepted"},
            {"email": "jo@client.example", "responseStatus": "tentative"},
        ],
        "_calendarId": CALENDAR,
        **extra,
    }


def test_calendar_events_land_in_utc_through_the_database(user, account):
    events = [
        timed_event("shifted"),
        {
            "id": "allday",
            "summary": "Conference day",
            "start": {"date": "2026-03-01"},
            "end": {"date": "2026-03-02"},
            "_calendarId": CALENDAR,
            "_calendarTimeZone": "America/New_York",
        },
        {
            "id": "offsite",
            "summary": "Offsite",
            "start": {"date": "2026-03-28"},
            "end": {"date": "2026-03-31"},
            "_calendarId": CALENDAR,
            "_calendarTimeZone": "Europe/Berlin",
        },
        timed_event("weekly", recurrence=["RRULE:FREQ=WEEKLY;COUNT=4;BYDAY=SU"]),
        timed_event(
            "weekly_20260308T180000Z",
            recurringEventId="weekly",
            originalStartTime={"dateTime": "2026-03-08T10:00:00-07:00"},
            start={"dateTime": "2026-03-08T12:00:00-07:00", "timeZone": "America/Los_Angeles"},
            end={"dateTime": "2026-03-08T13:00:00-07:00", "timeZone": "America/Los_Angeles"},
        ),
    ]
    store(user, events, provider="calendar", account=account)

    assert counts(normalize(user, "calendar")) == (5, 5, 0, 0, 0)
    stored = {i.source_id.partition("/")[2]: i for i in Interaction.objects.filter(user=user)}
    assert {key: i.occurred_at for key, i in stored.items()} == {
        "shifted": datetime(2026, 3, 1, 18, 0, tzinfo=UTC),
        "allday": datetime(2026, 3, 1, 5, 0, tzinfo=UTC),
        "offsite": datetime(2026, 3, 27, 23, 0, tzinfo=UTC),
        "weekly": datetime(2026, 3, 1, 18, 0, tzinfo=UTC),
        "weekly_20260308T180000Z": datetime(2026, 3, 8, 19, 0, tzinfo=UTC),
    }
    assert stored["offsite"].metadata["duration_s"] == 3 * 86_400
    assert stored["allday"].metadata["all_day"] is True
    assert stored["weekly"].metadata["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=4;BYDAY=SU"]
    assert stored["weekly_20260308T180000Z"].thread_id == "weekly"
    assert stored["shifted"].source_id == f"{CALENDAR}/shifted"
    assert stored["shifted"].body_text == "Agenda: renewal"
    assert stored["shifted"].metadata["attendees"][0]["self"] is True
    assert {i.kind for i in stored.values()} == {"meeting"}


def test_a_cancelled_event_updates_its_meeting_in_place(user, account):
    event = timed_event("evt")
    store(user, [event], provider="calendar", account=account)
    normalize(user, "calendar")
    before = Interaction.objects.get(user=user)

    # the sync merges Google's identity-only stub into the stored payload (jsonb ||)
    stub = {"kind": "calendar#event", "id": "evt", "status": "cancelled"}
    resync(user, f"{CALENDAR}/evt", {**event, **stub})

    assert counts(normalize(user, "calendar")) == (1, 0, 1, 0, 0)
    after = Interaction.objects.get(user=user)
    assert (after.pk, after.subject, after.occurred_at) == (
        before.pk,
        "Pipeline review",
        before.occurred_at,
    )
    assert after.metadata["cancelled"] is True
    assert after.metadata["status"] == "cancelled"


def test_every_generated_calendar_event_normalizes(user, account, generated_mailbox):
    events = [
        {**event, "_calendarId": calendar.id, "_calendarTimeZone": calendar.time_zone}
        for calendar in generated_mailbox.calendars
        for event in calendar.events
    ]
    store(user, events, provider="calendar", account=account)

    report = normalize(user, "calendar")

    assert counts(report) == (len(events), len(events), 0, 0, 0)
    cancelled = Interaction.objects.filter(metadata__cancelled=True).count()
    assert cancelled == sum(1 for event in events if event.get("status") == "cancelled") > 0


def test_other_users_pending_raw_events_of_the_same_batch_are_untouched(
    user, other_user, account, messages
):
    batch = store(user, messages[:5], account=account)
    store(other_user, messages[5:8], batch_id=batch)

    assert counts(normalize(user, batch_id=batch)) == (5, 5, 0, 0, 0)
    assert set(RawEvent.objects.filter(user=other_user).values_list("status", flat=True)) == {
        "pending"
    }
    assert not Interaction.objects.filter(user=other_user).exists()


def test_only_the_given_batch_is_taken_when_one_is_given(user, account, messages):
    batch = store(user, messages[:5], account=account)
    store(user, messages[5:8], account=account)

    assert normalize(user, batch_id=batch).fetched == 5
    assert RawEvent.objects.filter(status="pending").count() == 3


def test_fixa_item1_rows_taken_outside_their_batch_join_the_normalizing_batch(
    user, other_user, account, messages
):
    first = store(user, messages[:4], account=account)
    second = store(user, [*messages[4:6], {"id": "broken"}], account=account)
    untouched = store(user, [{"id": "e1", "_calendarId": CALENDAR}], provider="calendar")
    theirs = store(other_user, messages[8:10])
    sweep = uuid.uuid4()

    report = normalize(user, into_batch=sweep, chunk_size=3)

    assert (report.fetched, report.failed, report.chunks) == (7, 1, 3)
    rows = RawEvent.objects.filter(user=user, provider="gmail")
    # normalized and failed alike: every row it took is now in its batch, nothing else moved
    assert set(rows.values_list("batch_id", flat=True)) == {sweep}
    assert not RawEvent.objects.filter(batch_id__in=[first, second]).exists()
    assert set(RawEvent.objects.filter(provider="calendar").values_list("batch_id", flat=True)) == {
        untouched
    }
    assert set(RawEvent.objects.filter(user=other_user).values_list("batch_id", flat=True)) == {
        theirs
    }


def test_fixa_item1_without_into_batch_raw_events_keep_their_batch(user, account, messages):
    first = store(user, messages[:2], account=account)
    second = store(user, messages[2:3], account=account)

    assert normalize(user).fetched == 3

    assert sorted(RawEvent.objects.values_list("batch_id", flat=True), key=str) == sorted(
        [first, first, second], key=str
    )


def test_it_stops_between_chunks_when_asked_and_says_whether_work_is_left(user, account, messages):
    store(user, messages[:25], account=account)

    first = normalize(user, chunk_size=10, should_stop=lambda: True)
    assert (first.fetched, first.chunks, first.stopped) == (10, 1, True)

    rest = normalize(user, chunk_size=15, should_stop=lambda: True)
    assert (rest.fetched, rest.chunks, rest.stopped) == (15, 1, False)


def test_the_summary_counts_interactions_failures_and_pending_raw_events(
    user, other_user, account, messages
):
    store(user, [*messages[:3], {"id": "x"}], account=account)
    normalize(user)
    store(user, messages[3:5], account=account)
    store(other_user, messages[:2])

    assert normalization_summary(user_id=user.pk) == {
        "interactions": 3,
        "failedNormalizations": 1,
        "pendingRawEvents": 2,
    }


@pytest.mark.django_db(transaction=True)
def test_two_normalizers_never_take_the_same_rows(user, messages):
    store(user, messages[:20])
    report = {}

    def other_worker() -> None:
        try:
            report["other"] = normalize(user)
        finally:
            connection.close()

    with transaction.atomic():
        held = list(
            RawEvent.objects.select_for_update().order_by("id").values_list("id", flat=True)[:8]
        )
        worker = threading.Thread(target=other_worker)
        worker.start()
        worker.join()

    assert report["other"].fetched == 12
    pending = RawEvent.objects.filter(status="pending").values_list("id", flat=True)
    assert sorted(pending) == held


def mail(from_: str, to: str, subject: str) -> dict:
    """A message without labels (as a plain mbox import): its From address decides direction."""
    message = make_message(
        from_=from_, to=to, subject=subject, date=datetime(2025, 2, 1, 9, 0, tzinfo=UTC)
    )
    return gmail_message_from_rfc822(
        message.raw, label_ids=[], internal_date_ms=message.internal_date_ms
    )


CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not found next to the repository")
def test_real_world_mail_and_calendars_go_through_the_database_without_a_failure(user):
    mail = []
    for path in sorted((CORPUS / "mail").iterdir()):
        data = path.read_bytes()
        for raw in list(iter_mbox(path)) if data.startswith(b"From ") else [data]:
            message = gmail_message_from_rfc822(raw)
            mail.append(RawItem(message["id"], None, message))
    events = [
        RawItem(f"primary/{event['id']}", None, {**event, "_calendarId": "primary"})
        for path in sorted((CORPUS / "ics").iterdir())
        for event in calendar_events_from_ics(path.read_bytes(), calendar_id="primary")
    ]
    # stored the way the sync stores them (its JSON cleaning included)
    for provider, items in (("gmail", mail), ("calendar", events)):
        raw_events_upsert(
            user_id=user.pk, account_id=None, provider=provider, batch_id=uuid.uuid4(), items=items
        )

    reports = [normalize(user, "gmail"), normalize(user, "calendar")]

    stored = RawEvent.objects.filter(user=user)
    assert [r.fetched for r in reports] == [
        stored.filter(provider="gmail").count(),
        stored.filter(provider="calendar").count(),
    ]
    assert list(stored.exclude(status="normalized").values_list("source_id", "error")) == []
    assert Interaction.objects.filter(user=user).count() == stored.count() > 200
