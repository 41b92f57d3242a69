"""parse_calendar_event: all-day, multi-day, recurring, cancelled and time-zone-shifted events."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from jobs.normalization.calendar import parse_calendar_event
from jobs.normalization.types import NormalizationError, ParsedInteraction

FETCHED_AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
OWN = frozenset({"ada@example.com"})


def parse(event: dict, **kwargs) -> ParsedInteraction:
    kwargs.setdefault("calendar_id", "ada@example.com")
    return parse_calendar_event(event, own_addresses=OWN, fetched_at=FETCHED_AT, **kwargs)


def timed_event(**extra) -> dict:
    return {
        "kind": "calendar#event",
        "id": "evt1",
        "status": "confirmed",
        "summary": "Pipeline review",
        "start": {"dateTime": "2026-03-01T10:00:00-08:00", "timeZone": "America/Los_Angeles"},
        "end": {"dateTime": "2026-03-01T11:30:00-08:00", "timeZone": "America/Los_Angeles"},
        **extra,
    }


def test_it_converts_time_zone_shifted_events_to_utc() -> None:
    interaction = parse(timed_event())
    assert interaction.occurred_at == datetime(2026, 3, 1, 18, 0, tzinfo=UTC)
    assert interaction.occurred_at_estimated is False
    assert interaction.metadata["start"] == "2026-03-01T18:00:00+00:00"
    assert interaction.metadata["end"] == "2026-03-01T19:30:00+00:00"
    assert interaction.metadata["duration_s"] == 5400
    assert interaction.metadata["timezone"] == "America/Los_Angeles"
    assert interaction.metadata["all_day"] is False
    assert (interaction.kind, interaction.direction, interaction.source) == (
        "meeting",
        "",
        "calendar",
    )
    assert interaction.source_id == "ada@example.com/evt1"
    assert interaction.subject == "Pipeline review"


def test_it_reads_a_naive_date_time_in_its_own_time_zone() -> None:
    event = timed_event(start={"dateTime": "2026-07-01T09:00:00", "timeZone": "Europe/Berlin"})
    assert parse(event).occurred_at == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)


def test_an_all_day_event_starts_at_local_midnight_not_utc_midnight() -> None:
    event = {"id": "day", "start": {"date": "2026-03-01"}, "end": {"date": "2026-03-02"}}
    interaction = parse(event, default_tz="America/New_York")
    assert interaction.occurred_at == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
    assert interaction.metadata["start"] == "2026-03-01"
    assert interaction.metadata["end"] == "2026-03-02"
    assert interaction.metadata["all_day"] is True
    assert interaction.metadata["timezone"] == "America/New_York"
    assert interaction.metadata["duration_s"] == 86_400


def test_an_all_day_event_defaults_to_utc_midnight_without_a_zone() -> None:
    event = {"id": "day", "start": {"date": "2026-03-01"}, "end": {"date": "2026-03-02"}}
    assert parse(event).occurred_at == datetime(2026, 3, 1, tzinfo=UTC)


def test_a_multi_day_event_counts_the_exclusive_end_date() -> None:
    event = {
        "id": "offsite",
        "start": {"date": "2026-03-28"},
        "end": {"date": "2026-03-31"},
    }
    interaction = parse(event, default_tz="Europe/Berlin")
    # three days even though the DST switch on 29 March makes one of them 23 hours long
    assert interaction.metadata["duration_s"] == 3 * 86_400
    assert interaction.occurred_at == datetime(2026, 3, 27, 23, 0, tzinfo=UTC)


def test_a_recurring_instance_threads_on_its_master() -> None:
    event = timed_event(
        id="evt1_20260301T180000Z",
        recurringEventId="evt1",
        originalStartTime={"dateTime": "2026-03-01T10:00:00-08:00"},
    )
    interaction = parse(event)
    assert interaction.thread_id == "evt1"
    assert interaction.metadata["recurring_event_id"] == "evt1"
    assert interaction.metadata["original_start"] == "2026-03-01T18:00:00+00:00"


def test_a_recurring_master_keeps_its_rules() -> None:
    rules = ["RRULE:FREQ=WEEKLY;BYDAY=MO", "EXDATE;TZID=America/Los_Angeles:20260309T100000"]
    interaction = parse(timed_event(recurrence=rules))
    assert interaction.metadata["recurrence"] == rules
    assert interaction.thread_id == ""


def test_a_cancelled_event_is_marked_not_dropped() -> None:
    interaction = parse(timed_event(status="cancelled"))
    assert interaction.metadata["cancelled"] is True
    assert interaction.metadata["status"] == "cancelled"
    assert interaction.occurred_at == datetime(2026, 3, 1, 18, 0, tzinfo=UTC)


def test_a_minimal_cancelled_instance_uses_its_original_start() -> None:
    event = {
        "id": "evt1_20260308T180000Z",
        "status": "cancelled",
        "recurringEventId": "evt1",
        "originalStartTime": {
            "dateTime": "2026-03-08T10:00:00-07:00",
            "timeZone": "America/Los_Angeles",
        },
    }
    interaction = parse(event)
    assert interaction.occurred_at == datetime(2026, 3, 8, 17, 0, tzinfo=UTC)
    assert interaction.occurred_at_estimated is False
    assert interaction.metadata["cancelled"] is True
    assert interaction.subject == ""
    assert interaction.thread_id == "evt1"


def test_a_bare_cancelled_event_falls_back_to_the_fetch_time() -> None:
    interaction = parse({"id": "gone", "status": "cancelled"})
    assert interaction.occurred_at == FETCHED_AT
    assert interaction.occurred_at_estimated is True
    assert interaction.metadata["duration_s"] is None


def test_the_meeting_link_comes_from_hangout_link() -> None:
    interaction = parse(timed_event(hangoutLink="https://meet.google.com/abc-defg-hij"))
    assert interaction.metadata["meeting_link"] == "https://meet.google.com/abc-defg-hij"


def test_the_meeting_link_comes_from_conference_data() -> None:
    conference = {
        "entryPoints": [
            {"entryPointType": "phone", "uri": "tel:+1-555-0100"},
            {"entryPointType": "video", "uri": "https://zoom.us/j/123"},
        ]
    }
    interaction = parse(timed_event(conferenceData=conference))
    assert interaction.metadata["meeting_link"] == "https://zoom.us/j/123"
    assert parse(timed_event()).metadata["meeting_link"] is None


def test_attendees_keep_their_response_status() -> None:
    attendees = [
        {"email": "Ada@Example.com", "responseStatus": "accepted", "organizer": True},
        {"email": "bob@example.net", "displayName": "Bob", "responseStatus": "declined"},
        {"email": "carol@example.net", "responseStatus": "tentative", "optional": True},
        {"email": "dave@example.net"},
        {"displayName": "no email, dropped"},
    ]
    organizer = {"email": "Ada@Example.com", "displayName": "Ada"}
    interaction = parse(timed_event(attendees=attendees, organizer=organizer))
    assert interaction.metadata["attendees"] == [
        {
            "email": "ada@example.com",
            "name": "",
            "response_status": "accepted",
            "organizer": True,
            "optional": False,
            "self": True,
        },
        {
            "email": "bob@example.net",
            "name": "Bob",
            "response_status": "declined",
            "organizer": False,
            "optional": False,
            "self": False,
        },
        {
            "email": "carol@example.net",
            "name": "",
            "response_status": "tentative",
            "organizer": False,
            "optional": True,
            "self": False,
        },
        {
            "email": "dave@example.net",
            "name": "",
            "response_status": "needsAction",
            "organizer": False,
            "optional": False,
            "self": False,
        },
    ]
    assert interaction.metadata["organizer"] == {
        "email": "ada@example.com",
        "name": "Ada",
        "self": True,
    }


def test_html_descriptions_become_text() -> None:
    description = "<b>Agenda</b><br>1. Pipeline<br>2. Q&amp;A<script>x()</script>"
    interaction = parse(timed_event(description=description, location="Room 4"))
    assert interaction.body_text == "Agenda\n1. Pipeline\n2. Q&A"
    assert interaction.metadata["location"] == "Room 4"


def test_plain_descriptions_keep_their_lines_and_angle_brackets() -> None:
    interaction = parse(timed_event(description="Dial in:\r\n  a < b > c\r\n"))
    assert interaction.body_text == "Dial in:\n  a < b > c"


def test_metadata_is_json_and_free_of_nul_characters() -> None:
    event = timed_event(
        summary="Nul\x00here",
        location="Room\x00 1",
        iCalUID="uid@example.com",
        htmlLink="https://www.google.com/calendar/event?eid=x",
        updated="2026-02-01T00:00:00.000Z",
    )
    interaction = parse(event)
    assert interaction.subject == "Nulhere"
    text = json.dumps(interaction.metadata)
    assert "\\u0000" not in text
    assert interaction.metadata["ical_uid"] == "uid@example.com"
    assert interaction.metadata["calendar_id"] == "ada@example.com"


def test_an_unknown_time_zone_falls_back_to_utc() -> None:
    event = {"id": "x", "start": {"date": "2026-03-01", "timeZone": "Mars/Olympus"}}
    assert parse(event, default_tz="Nowhere/Else").occurred_at == datetime(2026, 3, 1, tzinfo=UTC)


def test_garbage_times_are_estimated_instead_of_raising() -> None:
    event = {"id": "x", "start": {"dateTime": "yesterday-ish"}, "end": {"date": "31/02/2026"}}
    interaction = parse(event)
    assert interaction.occurred_at_estimated is True


def test_an_event_without_id_is_a_normalization_error() -> None:
    with pytest.raises(NormalizationError):
        parse({"status": "confirmed"})
    with pytest.raises(NormalizationError):
        parse(["not", "an", "event"])  # type: ignore[arg-type]
