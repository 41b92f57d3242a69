"""Calendar v3 through the real client: calendarList paging, events paging, expansion, sync."""

from __future__ import annotations

import pytest
from googleapiclient.errors import HttpError

TEAM = "c_team@group.calendar.google.com"
MASTER = {
    "id": "weekly0sync",
    "summary": "Weekly sync",
    # Five Mondays at 10:00 Berlin time; Europe changes to summer time on 30 March 2025.
    "start": {"dateTime": "2025-03-17T10:00:00+01:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2025-03-17T10:30:00+01:00", "timeZone": "Europe/Berlin"},
    "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=5;BYDAY=MO"],
    "attendees": [{"email": "ana@globex.example", "responseStatus": "accepted"}],
}


@pytest.fixture
def team(emulator):
    """A weekly series (one instance moved, one cancelled) and an all-day event."""
    mailbox = emulator.mailbox()
    mailbox.add_calendar(TEAM, "Team", time_zone="Europe/Berlin")
    mailbox.add_event(TEAM, MASTER)
    mailbox.add_event(
        TEAM,
        {
            **{k: v for k, v in MASTER.items() if k != "recurrence"},
            "id": "weekly0sync_20250324T090000Z",
            "recurringEventId": "weekly0sync",
            "originalStartTime": {
                "dateTime": "2025-03-24T10:00:00+01:00",
                "timeZone": "Europe/Berlin",
            },
            "start": {"dateTime": "2025-03-24T12:00:00+01:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2025-03-24T12:30:00+01:00", "timeZone": "Europe/Berlin"},
        },
    )
    mailbox.add_event(
        TEAM,
        {
            "id": "weekly0sync_20250407T080000Z",
            "recurringEventId": "weekly0sync",
            "originalStartTime": {"dateTime": "2025-04-07T10:00:00+02:00"},
            **_times("2025-04-07T10:00:00+02:00"),
        },
    )
    mailbox.cancel_event(TEAM, "weekly0sync_20250407T080000Z")
    mailbox.add_event(
        TEAM,
        {
            "id": "holiday0",
            "summary": "Holiday",
            "start": {"date": "2025-03-20"},
            "end": {"date": "2025-03-21"},
        },
    )
    return mailbox.calendar(TEAM)


def _times(start: str) -> dict:
    return {"start": {"dateTime": start}, "end": {"dateTime": start}}


def list_pages(calendar, **kwargs) -> list[dict]:
    pages, token = [], None
    while True:
        page = calendar.events().list(pageToken=token, **kwargs).execute()
        pages.append(page)
        token = page.get("nextPageToken")
        if not token:
            return pages


def items(calendar, **kwargs) -> list[dict]:
    return [item for page in list_pages(calendar, **kwargs) for item in page["items"]]


def test_calendar_list_pages_with_the_primary_calendar_first(calendar, emulator, generated_mailbox):
    for n in range(3):
        emulator.mailbox().add_calendar(f"c_{n}@group.calendar.google.com", f"Project {n}")

    first = calendar.calendarList().list(maxResults=2).execute()
    second = calendar.calendarList().list(maxResults=2, pageToken=first["nextPageToken"]).execute()
    third = calendar.calendarList().list(maxResults=2, pageToken=second["nextPageToken"]).execute()

    entries = first["items"] + second["items"] + third["items"]
    assert [len(page["items"]) for page in (first, second, third)] == [2, 2, 1]
    assert "nextPageToken" not in third
    assert entries[0]["id"] == generated_mailbox.owner_email and entries[0]["primary"] is True
    assert entries[0]["accessRole"] == "owner" and entries[0]["timeZone"] == "America/New_York"
    assert len({entry["id"] for entry in entries}) == 5


def test_events_page_with_next_page_token_until_the_last_page_has_the_sync_token(
    calendar, generated_mailbox
):
    pages = list_pages(calendar, calendarId="primary", maxResults=7)

    assert all("nextPageToken" in p and "nextSyncToken" not in p for p in pages[:-1])
    assert "nextSyncToken" in pages[-1] and "nextPageToken" not in pages[-1]
    listed = [item["id"] for page in pages for item in page["items"]]
    primary = generated_mailbox.calendars[0].events
    # Deleted events are hidden, except cancelled instances of a series (Google keeps those).
    expected = [e["id"] for e in primary if e["status"] != "cancelled" or "recurringEventId" in e]
    assert listed == expected


def test_max_results_defaults_to_250(calendar, emulator):
    mailbox = emulator.mailbox()
    mailbox.add_calendar(TEAM, "Team")
    for n in range(260):
        mailbox.add_event(TEAM, {"id": f"event{n:05d}", **_times("2025-03-03T10:00:00Z")})

    page = calendar.events().list(calendarId=TEAM).execute()

    assert len(page["items"]) == 250 and "nextPageToken" in page


def test_single_events_expands_a_series_into_instances_keeping_local_time_across_dst(
    calendar, team
):
    instances = items(calendar, calendarId=TEAM, singleEvents=True, orderBy="startTime")

    series = [i for i in instances if i.get("recurringEventId") == "weekly0sync"]
    assert [i["start"]["dateTime"] for i in series] == [
        "2025-03-17T10:00:00+01:00",
        "2025-03-24T12:00:00+01:00",  # the moved instance
        "2025-03-31T10:00:00+02:00",
        "2025-04-14T10:00:00+02:00",  # 7 April was cancelled
    ]
    assert [i["id"] for i in series] == [
        "weekly0sync_20250317T090000Z",
        "weekly0sync_20250324T090000Z",
        "weekly0sync_20250331T080000Z",
        "weekly0sync_20250414T080000Z",
    ]
    assert series[1]["originalStartTime"]["dateTime"] == "2025-03-24T10:00:00+01:00"
    assert all("recurrence" not in i and i["attendees"] == MASTER["attendees"] for i in series)
    starts = [i["start"].get("dateTime", i["start"].get("date")) for i in instances]
    assert starts[1] == "2025-03-20"  # the all-day event sorts between the first two instances


def test_show_deleted_adds_cancelled_instances_to_an_expanded_listing(calendar, team):
    expanded = items(calendar, calendarId=TEAM, singleEvents=True, showDeleted=True)

    cancelled = [i for i in expanded if i["status"] == "cancelled"]
    assert [i["id"] for i in cancelled] == ["weekly0sync_20250407T080000Z"]
    assert cancelled[0]["recurringEventId"] == "weekly0sync" and "summary" not in cancelled[0]


def test_without_single_events_the_series_and_its_exceptions_are_listed(calendar, team):
    listed = items(calendar, calendarId=TEAM)

    assert [(e["id"], e["status"]) for e in listed] == [
        ("weekly0sync", "confirmed"),
        ("weekly0sync_20250324T090000Z", "confirmed"),
        ("weekly0sync_20250407T080000Z", "cancelled"),
        ("holiday0", "confirmed"),
    ]
    assert listed[0]["recurrence"] == MASTER["recurrence"]


def test_deleted_events_appear_only_with_show_deleted(calendar, emulator):
    emulator.mailbox().cancel_event("primary", items(calendar, calendarId="primary")[0]["id"])

    hidden = items(calendar, calendarId="primary", singleEvents=True)
    shown = items(calendar, calendarId="primary", singleEvents=True, showDeleted=True)

    assert all(e["status"] != "cancelled" for e in hidden)
    assert len([e for e in shown if e["status"] == "cancelled"]) >= 2
    assert {e["id"] for e in hidden} < {e["id"] for e in shown}


def test_the_time_window_keeps_events_ending_after_min_and_starting_before_max(calendar, team):
    def window(time_min: str, time_max: str) -> list[str]:
        listed = items(
            calendar, calendarId=TEAM, singleEvents=True, timeMin=time_min, timeMax=time_max
        )
        return [e["id"] for e in listed]

    # The first instance runs 09:00-09:30 UTC; both bounds are exclusive.
    assert window("2025-03-17T09:30:00Z", "2025-03-19T00:00:00Z") == []
    assert window("2025-03-17T09:29:00Z", "2025-03-17T09:01:00Z") == [
        "weekly0sync_20250317T090000Z"
    ]
    assert window("2025-03-20T12:00:00+01:00", "2025-03-21T00:00:00+01:00") == ["holiday0"]
    non_expanded = items(
        calendar, calendarId=TEAM, timeMin="2025-04-10T00:00:00Z", timeMax="2025-04-20T00:00:00Z"
    )
    assert [e["id"] for e in non_expanded] == ["weekly0sync"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"orderBy": "startTime"},
        {"timeMin": "2025-03-01T00:00:00"},
        {"timeMax": "next tuesday"},
    ],
)
def test_requests_google_would_refuse_are_400(calendar, kwargs):
    with pytest.raises(HttpError) as error:
        calendar.events().list(calendarId="primary", **kwargs).execute()

    assert error.value.status_code == 400


def test_an_unknown_calendar_is_404(calendar):
    with pytest.raises(HttpError) as error:
        calendar.events().list(calendarId="nobody@group.calendar.google.com").execute()

    assert error.value.status_code == 404


def test_a_sync_token_returns_exactly_the_changes_including_cancellations(calendar, emulator, team):
    mailbox = emulator.mailbox()
    token = list_pages(calendar, calendarId=TEAM)[-1]["nextSyncToken"]

    mailbox.update_event(TEAM, "holiday0", {"summary": "Public holiday"})
    mailbox.cancel_event(TEAM, "weekly0sync_20250324T090000Z")
    mailbox.add_event(
        TEAM, {"id": "new0event", "summary": "Demo", **_times("2025-03-05T15:00:00Z")}
    )
    pages = list_pages(calendar, calendarId=TEAM, syncToken=token, maxResults=2)
    changes = [item for page in pages for item in page["items"]]
    after = calendar.events().list(calendarId=TEAM, syncToken=pages[-1]["nextSyncToken"]).execute()

    assert [(c["id"], c["status"]) for c in changes] == [
        ("holiday0", "confirmed"),
        ("weekly0sync_20250324T090000Z", "cancelled"),
        ("new0event", "confirmed"),
    ]
    assert changes[0]["summary"] == "Public holiday" and changes[0]["sequence"] == 1
    assert "nextPageToken" in pages[0] and "nextSyncToken" in pages[-1]
    assert after["items"] == [] and after["nextSyncToken"]


def test_a_sync_token_cannot_be_combined_with_a_time_window(calendar):
    token = list_pages(calendar, calendarId="primary")[-1]["nextSyncToken"]

    with pytest.raises(HttpError) as error:
        calendar.events().list(
            calendarId="primary", syncToken=token, timeMin="2025-01-01T00:00:00Z"
        ).execute()

    assert error.value.status_code == 400


def test_an_expired_sync_token_is_410_full_sync_required(calendar, emulator):
    token = list_pages(calendar, calendarId="primary")[-1]["nextSyncToken"]
    emulator.mailbox().expire_sync_tokens("primary")

    with pytest.raises(HttpError) as error:
        calendar.events().list(calendarId="primary", syncToken=token).execute()

    assert error.value.status_code == 410
    assert error.value.error_details[0]["reason"] == "fullSyncRequired"
    fresh = list_pages(calendar, calendarId="primary")[-1]["nextSyncToken"]
    assert calendar.events().list(calendarId="primary", syncToken=fresh).execute()["items"] == []


def test_events_loaded_from_an_ics_file_are_served(calendar, emulator, tmp_path):
    ics = tmp_path / "team.ics"
    ics.write_bytes(
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        b"UID:standup-1@example.com\r\nDTSTAMP:20250301T000000Z\r\n"
        b"DTSTART;TZID=America/New_York:20250303T093000\r\nDTEND;TZID=America/New_York:20250303T094500\r\n"
        b"RRULE:FREQ=DAILY;COUNT=3\r\nSUMMARY:Stand-up\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )

    assert emulator.mailbox().load_ics(ics) == 1

    standups = [
        e
        for e in items(calendar, calendarId="primary", singleEvents=True)
        if e.get("summary") == "Stand-up"
    ]
    assert [e["start"]["dateTime"] for e in standups] == [
        "2025-03-03T09:30:00-05:00",
        "2025-03-04T09:30:00-05:00",
        "2025-03-05T09:30:00-05:00",
    ]
