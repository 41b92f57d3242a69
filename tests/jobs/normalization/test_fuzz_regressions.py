"""Inputs the fuzzers (tests/chaos/test_fuzz_*.py) found crashing, pinned as plain regressions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobs.normalization.calendar import parse_calendar_event
from jobs.normalization.gmail import parse_gmail_message
from jobs.sync.convert import attachment_bytes, gmail_message_from_rfc822
from jobs.sync.gmail import message_item

FETCHED_AT = datetime(2026, 3, 10, tzinfo=UTC)


@pytest.mark.parametrize("internal_date", ["9" * 25, "\u00b2", "99999999999999999", 10**30])
def test_an_internal_date_no_calendar_holds_stores_the_message_undated(internal_date):
    # Found by test_fuzz_gmail: the sync's store raised OverflowError (or ValueError) and the
    # whole fetched chunk failed with it, at every retry.
    item = message_item({"id": "m1", "internalDate": internal_date, "payload": {}})

    assert (item.source_id, item.occurred_at) == ("m1", None)


def test_a_sane_internal_date_still_dates_the_message():
    item = message_item({"id": "m1", "internalDate": "1772532000000"})

    assert item.occurred_at == datetime(2026, 3, 3, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("attendees", [5, True, 1.5, "ada@example.com"])
def test_attendees_that_are_not_a_list_are_no_attendees(attendees):
    # Found by test_fuzz_calendar: iterating an int raised TypeError, recorded on the raw event
    # as "TypeError: 'int' object is not iterable" instead of a meeting.
    parsed = parse_calendar_event(
        {"id": "e1", "summary": "Sync", "attendees": attendees},
        calendar_id="c",
        own_addresses=frozenset(),
        fetched_at=FETCHED_AT,
    )

    assert (parsed.subject, parsed.metadata["attendees"]) == ("Sync", [])


def nested_mail(depth: int) -> bytes:
    """A message whose text and attachment sit `depth` multiparts deep (as test_fuzz_convert
    generates them)."""
    head = b"From: ada@example.com\r\nSubject: deep\r\nMessage-ID: <deep@x>\r\n"
    for i in range(depth):
        head += b"Content-Type: multipart/mixed; boundary=d%d\r\n\r\n--d%d\r\n" % (i, i)
    leaves = (
        b"Content-Type: multipart/mixed; boundary=leaf\r\n\r\n--leaf\r\n"
        b"Content-Type: text/plain\r\n\r\ndeep down\r\n--leaf\r\n"
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--leaf--\r\n"
    )
    return head + leaves + b"".join(b"--d%d--\r\n" % i for i in reversed(range(depth)))


def attachments(part: dict) -> list[str]:
    found = [part["body"]["attachmentId"]] if "attachmentId" in part["body"] else []
    return found + [a for child in part.get("parts", []) for a in attachments(child)]


def json_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((json_depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("depth", [5, 450, 900])
def test_mail_nested_hundreds_deep_converts_with_its_text_and_attachment(depth):
    # Found by test_fuzz_convert: from about 500 levels gmail_message_from_rfc822 raised
    # RecursionError, which escaped mbox_import (the whole import stopped with a traceback).
    raw = nested_mail(depth)

    full = gmail_message_from_rfc822(raw)

    parsed = parse_gmail_message(full, own_addresses=frozenset(), fetched_at=FETCHED_AT)
    assert (parsed.subject, parsed.body_text) == ("deep", "deep down")
    assert [a["filename"] for a in parsed.metadata["attachments"]] == ["a.pdf"]
    (attachment,) = attachments(full["payload"])
    assert attachment_bytes(raw, attachment, message_id=full["id"]) == b"%PDF-"
    # bounded nesting: the normalizer (32 levels) and json/jsonb all read it
    assert json_depth(full) < 80


def test_mail_nested_deeper_than_the_mail_parser_goes_converts_its_headers():
    # Python's own mail parser recurses once per level and gives up near 3,000.
    full = gmail_message_from_rfc822(nested_mail(5000))

    parsed = parse_gmail_message(full, own_addresses=frozenset(), fetched_at=FETCHED_AT)
    assert (parsed.source_id, parsed.subject, parsed.metadata["from"]["email"]) == (
        full["id"],
        "deep",
        "ada@example.com",
    )
