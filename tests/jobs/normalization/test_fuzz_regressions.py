"""Inputs the fuzzers (tests/chaos/test_fuzz_*.py) found crashing, pinned as plain regressions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobs.normalization.calendar import parse_calendar_event
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
