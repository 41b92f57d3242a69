"""RFC 822, mbox and iCalendar conversion into Gmail v1 / Calendar v3 resources."""

from __future__ import annotations

import base64
import io
import json
from email.message import EmailMessage

import pytest

from jobs.sync.convert import (
    attachment_bytes,
    calendar_events_from_ics,
    format_message,
    gmail_labels_from_headers,
    gmail_message_from_rfc822,
    iter_mbox,
)


def b64decode(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def mixed_message() -> bytes:
    msg = EmailMessage()
    msg["From"] = '"Doe, John" <john@example.org>'
    msg["To"] = "ada@example.com"
    msg["Subject"] = "Quarterly numbers"
    msg["Date"] = "Tue, 03 Mar 2026 10:00:00 -0800"
    msg["Message-ID"] = "<q1@example.org>"
    msg.set_content("The numbers are attached.\n")
    msg.add_alternative("<p>The numbers are <b>attached</b>.</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 data", maintype="application", subtype="pdf", filename="q1.pdf")
    return msg.as_bytes()


def test_raw_format_returns_the_original_bytes_exactly() -> None:
    raw = mixed_message().replace(b"\n", b"\r\n") + b"\x00trailing"
    full = gmail_message_from_rfc822(raw)
    projected = format_message(full, raw, "raw")
    assert b64decode(projected["raw"]) == raw
    assert "payload" not in projected
    assert projected["id"] == full["id"]


def test_full_format_has_gmail_part_ids_mime_types_and_attachment_ids() -> None:
    raw = mixed_message()
    full = gmail_message_from_rfc822(raw)
    payload = full["payload"]
    assert set(full) == {
        "id",
        "threadId",
        "labelIds",
        "snippet",
        "payload",
        "sizeEstimate",
        "historyId",
        "internalDate",
    }
    assert payload["partId"] == ""
    assert payload["mimeType"] == "multipart/mixed"
    assert payload["body"] == {"size": 0}
    alternative, pdf = payload["parts"]
    assert alternative["partId"] == "0"
    assert [p["partId"] for p in alternative["parts"]] == ["0.0", "0.1"]
    assert [p["mimeType"] for p in alternative["parts"]] == ["text/plain", "text/html"]
    assert b64decode(alternative["parts"][0]["body"]["data"]) == b"The numbers are attached.\n"
    assert pdf["partId"] == "1"
    assert pdf["filename"] == "q1.pdf"
    assert "data" not in pdf["body"]
    assert pdf["body"]["size"] == len(b"%PDF-1.4 data")
    assert attachment_bytes(raw, pdf["body"]["attachmentId"]) == b"%PDF-1.4 data"
    headers = {h["name"]: h["value"] for h in payload["headers"]}
    assert headers["From"] == '"Doe, John" <john@example.org>'
    assert full["snippet"] == "The numbers are attached."
    assert full["internalDate"] == "1772560800000"
    assert full["historyId"] == "1"
    assert full["labelIds"] == ["INBOX"]
    json.dumps(full)


def test_ids_are_deterministic_16_hex_chars_and_follow_the_thread_root() -> None:
    root = b"Message-ID: <root@x.org>\r\nSubject: a\r\n\r\nhi\r\n"
    reply = (
        b"Message-ID: <reply@x.org>\r\nIn-Reply-To: <mid@x.org>\r\n"
        b"References: <root@x.org> <mid@x.org>\r\nSubject: Re: a\r\n\r\nyo\r\n"
    )
    first = gmail_message_from_rfc822(root)
    assert first == gmail_message_from_rfc822(root)
    assert len(first["id"]) == 16
    assert int(first["id"], 16) >= 0
    assert first["threadId"] == first["id"]
    second = gmail_message_from_rfc822(reply)
    assert second["threadId"] == first["id"]
    assert second["id"] != first["id"]


def test_takeout_thread_id_is_the_hex_of_x_gm_thrid() -> None:
    raw = b"X-GM-THRID: 1592751263245218432\r\nSubject: t\r\n\r\nbody\r\n"
    assert gmail_message_from_rfc822(raw)["threadId"] == format(1592751263245218432, "x")


def test_internal_date_prefers_the_first_received_header() -> None:
    raw = (
        b"Received: from a by b; Wed, 04 Mar 2026 08:00:00 +0000\r\n"
        b"Received: from c by a; Wed, 04 Mar 2026 07:59:00 +0000\r\n"
        b"Date: Tue, 03 Mar 2026 10:00:00 +0000\r\n\r\nbody\r\n"
    )
    assert gmail_message_from_rfc822(raw)["internalDate"] == "1772611200000"
    given = gmail_message_from_rfc822(raw, internal_date_ms=5, message_id="abc", history_id=9)
    assert (given["internalDate"], given["id"], given["historyId"]) == ("5", "abc", "9")


def test_metadata_format_keeps_only_the_requested_headers() -> None:
    raw = mixed_message()
    full = gmail_message_from_rfc822(raw)
    meta = format_message(full, raw, "metadata", ["subject", "FROM"])
    assert meta["payload"]["headers"] == [
        {"name": "From", "value": '"Doe, John" <john@example.org>'},
        {"name": "Subject", "value": "Quarterly numbers"},
    ]
    assert "parts" not in meta["payload"]
    everything = format_message(full, raw, "metadata")
    assert len(everything["payload"]["headers"]) == len(full["payload"]["headers"])


def test_minimal_format_has_no_payload() -> None:
    raw = mixed_message()
    full = gmail_message_from_rfc822(raw)
    minimal = format_message(full, raw, "minimal")
    assert "payload" not in minimal
    assert minimal["snippet"] == full["snippet"]
    with pytest.raises(ValueError):
        format_message(full, raw, "pretty")


def test_single_part_bodies_live_in_the_payload_body() -> None:
    raw = b"Content-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
    payload = gmail_message_from_rfc822(raw)["payload"]
    assert payload["mimeType"] == "text/plain"
    assert b64decode(payload["body"]["data"]) == b"hello\r\n"
    assert "parts" not in payload


def test_malformed_mail_still_converts() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=XX\r\nSubject: =?bogus?B?!!!?=\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain; charset=no-such-charset\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n@@not base64\x00\xff\r\n"
    )
    full = gmail_message_from_rfc822(raw)
    assert full["payload"]["parts"][0]["mimeType"] == "text/plain"
    json.dumps(full)


def test_mbox_streams_messages_and_unquotes_from_lines() -> None:
    messages = [
        b"Subject: one\n\nFrom the start\n>From quoted once\n",
        b"Subject: two\n\nplain\n",
        b"Subject: three\n\n>From deeper\n",
    ]
    mbox = b"".join(
        b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n"
        + message.replace(b"\n>From", b"\n>>From").replace(b"\nFrom ", b"\n>From ")
        + b"\n"
        for message in messages
    )
    assert list(iter_mbox(io.BytesIO(mbox))) == messages


def test_mbox_streams_from_a_path(tmp_path) -> None:
    path = tmp_path / "all.mbox"
    path.write_bytes(b"From a@b Thu Jan  1 00:00:00 2026\r\nSubject: x\r\n\r\nbody\r\n\r\n")
    assert list(iter_mbox(path)) == [b"Subject: x\r\n\r\nbody\r\n"]


def test_takeout_labels_become_gmail_label_ids() -> None:
    raw = (
        b"X-Gmail-Labels: Inbox,Sent,Important,Category Updates,Spam,Trash,Drafts,Chat,"
        b'Opened,Unread,Starred,"Clients, 2026",Customers\r\n\r\nx'
    )
    assert gmail_labels_from_headers(raw) == [
        "INBOX",
        "SENT",
        "IMPORTANT",
        "CATEGORY_UPDATES",
        "SPAM",
        "TRASH",
        "DRAFT",
        "CHAT",
        "UNREAD",
        "STARRED",
        "Label_Clients, 2026",
        "Label_Customers",
    ]
    assert gmail_message_from_rfc822(raw)["labelIds"][:2] == ["INBOX", "SENT"]


ICS = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//test//EN\r
BEGIN:VEVENT\r
UID:allday-1\r
DTSTAMP:20260101T000000Z\r
DTSTART;VALUE=DATE:20260301\r
DTEND;VALUE=DATE:20260303\r
SUMMARY:Offsite\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:weekly-1\r
DTSTAMP:20260101T000000Z\r
CREATED:20251201T120000Z\r
LAST-MODIFIED:20260102T120000Z\r
SEQUENCE:3\r
DTSTART;TZID=America/Los_Angeles:20260302T100000\r
DTEND;TZID=America/Los_Angeles:20260302T103000\r
RRULE:FREQ=WEEKLY;BYDAY=MO\r
EXDATE;TZID=America/Los_Angeles:20260309T100000\r
SUMMARY:Standup\r
DESCRIPTION:Daily sync\r
LOCATION:Room 1\r
ORGANIZER;CN=Ada:mailto:ada@example.com\r
ATTENDEE;CN=Ada;PARTSTAT=ACCEPTED:mailto:ada@example.com\r
ATTENDEE;CN="Doe, John";PARTSTAT=DECLINED;ROLE=OPT-PARTICIPANT:mailto:John@X.org\r
ATTENDEE;PARTSTAT=TENTATIVE:mailto:t@x.org\r
ATTENDEE:mailto:n@x.org\r
X-GOOGLE-CONFERENCE:https://meet.google.com/abc-defg-hij\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:weekly-1\r
DTSTAMP:20260101T000000Z\r
RECURRENCE-ID;TZID=America/Los_Angeles:20260316T100000\r
DTSTART;TZID=America/Los_Angeles:20260316T110000\r
DTEND;TZID=America/Los_Angeles:20260316T113000\r
SUMMARY:Standup (moved)\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:gone-1\r
DTSTAMP:20260101T000000Z\r
DTSTART:20260305T150000Z\r
DURATION:PT45M\r
STATUS:CANCELLED\r
SUMMARY:Cancelled call\r
END:VEVENT\r
END:VCALENDAR\r
"""


def events_by_summary() -> dict[str, dict]:
    return {e["summary"]: e for e in calendar_events_from_ics(ICS, calendar_id="ada@example.com")}


def test_ics_all_day_events_use_dates() -> None:
    offsite = events_by_summary()["Offsite"]
    assert offsite["start"] == {"date": "2026-03-01"}
    assert offsite["end"] == {"date": "2026-03-03"}
    assert offsite["status"] == "confirmed"
    assert offsite["iCalUID"] == "allday-1"


def test_ics_timed_events_keep_tzid_and_recurrence() -> None:
    standup = events_by_summary()["Standup"]
    assert standup["start"] == {
        "dateTime": "2026-03-02T10:00:00-08:00",
        "timeZone": "America/Los_Angeles",
    }
    assert standup["end"]["dateTime"] == "2026-03-02T10:30:00-08:00"
    assert standup["recurrence"] == [
        "RRULE:FREQ=WEEKLY;BYDAY=MO",
        "EXDATE;TZID=America/Los_Angeles:20260309T100000",
    ]
    assert standup["sequence"] == 3
    assert standup["created"] == "2025-12-01T12:00:00.000Z"
    assert standup["updated"] == "2026-01-02T12:00:00.000Z"
    assert standup["description"] == "Daily sync"
    assert standup["location"] == "Room 1"
    assert standup["hangoutLink"] == "https://meet.google.com/abc-defg-hij"
    assert standup["conferenceData"]["entryPoints"][0]["uri"] == standup["hangoutLink"]
    assert standup["organizer"] == {"email": "ada@example.com", "displayName": "Ada", "self": True}


def test_ics_attendees_map_partstat_to_response_status() -> None:
    attendees = events_by_summary()["Standup"]["attendees"]
    assert attendees == [
        {
            "email": "ada@example.com",
            "displayName": "Ada",
            "organizer": True,
            "self": True,
            "responseStatus": "accepted",
        },
        {
            "email": "john@x.org",
            "displayName": "Doe, John",
            "optional": True,
            "responseStatus": "declined",
        },
        {"email": "t@x.org", "responseStatus": "tentative"},
        {"email": "n@x.org", "responseStatus": "needsAction"},
    ]


def test_ics_recurrence_id_overrides_become_instances_of_the_master() -> None:
    events = events_by_summary()
    master, moved = events["Standup"], events["Standup (moved)"]
    assert moved["recurringEventId"] == master["id"]
    assert moved["id"] == f"{master['id']}_20260316T170000Z"
    assert moved["originalStartTime"]["dateTime"] == "2026-03-16T10:00:00-07:00"
    assert moved["start"]["dateTime"] == "2026-03-16T11:00:00-07:00"
    assert "recurrence" not in moved


def test_ics_cancelled_events_are_kept_with_their_status() -> None:
    cancelled = events_by_summary()["Cancelled call"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["start"] == {"dateTime": "2026-03-05T15:00:00Z", "timeZone": "UTC"}
    assert cancelled["end"]["dateTime"] == "2026-03-05T15:45:00Z"


def test_ics_ids_are_stable_and_google_ids_are_reused() -> None:
    first = [e["id"] for e in calendar_events_from_ics(ICS)]
    assert first == [e["id"] for e in calendar_events_from_ics(ICS)]
    assert len(set(first)) == len(first)
    google = ICS.replace(b"UID:allday-1", b"UID:3p8a1hpkq0bd5k2c9e0r4m1v7o@google.com")
    ids = [e["id"] for e in calendar_events_from_ics(google)]
    assert "3p8a1hpkq0bd5k2c9e0r4m1v7o" in ids


def test_ics_garbage_gives_no_events_instead_of_raising() -> None:
    assert calendar_events_from_ics(b"\x00\xffnot a calendar") == []
    broken_alarm = ICS.replace(
        b"SUMMARY:Offsite\r\n",
        b"SUMMARY:Offsite\r\nBEGIN:VALARM\r\nTRIGGER:PT-2H\r\nEND:VALARM\r\n",
    )
    assert len(calendar_events_from_ics(broken_alarm)) == 4


@pytest.mark.parametrize(
    "encoded",
    [
        b"JVBERi0xLjQK\r\nJVBERi0=\r\n",  # padded, CRLF lines
        b"JVBERi0xLjQKJVBERi0",  # padding missing
        b"JVBE Ri0x\tLjQK JVBE Ri0=",  # spaces and tabs inside
        b"JVBERi0xLjQKJ",  # one char over a group of four
        b"JVBERi0xLjQK==",  # padding where none is due
        b"JVBE!!Ri0xLjQK",  # not base64 at all
        b"",
    ],
)
def test_an_attachment_s_size_is_its_decoded_size(encoded) -> None:
    raw = (
        b"From: a@b.c\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"\r\n--b--\r\n"
    )
    full = gmail_message_from_rfc822(raw)

    (part,) = full["payload"]["parts"]
    data = attachment_bytes(raw, part["body"]["attachmentId"], message_id=full["id"])
    assert part["body"]["size"] == len(data)
