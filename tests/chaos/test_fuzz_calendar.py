"""Fuzz: hostile Calendar events resources through the sync's store and the normalize job.

Every example stores one to four generated events (keys missing or of the wrong type, dates
that do not exist or overflow UTC, zone names that are paths or nothing, attendee "lists" that
are numbers, descriptions of half a million words) as the Calendar sync stores them, runs
normalize_calendar and the stages after it, and checks the oracle: no job fails, an event with
an id becomes its meeting (dated, its body within the cap), anything else is marked failed with a
sentence that names what is missing.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.config import get_config
from jobs.sync.raw_events import RawItem
from tests.chaos.fuzzing import (
    check_failure,
    check_interaction,
    print_figures,
    reset,
    store_and_normalize,
)
from tests.chaos.strategies import FUZZ, calendar_events

pytestmark = pytest.mark.django_db

CALENDAR = "alex.morgan@pipeline.example"
EVENTS = st.integers(1, 4).flatmap(
    lambda n: st.tuples(*(calendar_events(f"ev{i:05d}", CALENDAR) for i in range(n)))
)


@pytest.fixture
def inline(pipeline_config):
    pipeline_config(handoff="none")


def test_hostile_calendar_events_become_meetings_or_fail_with_a_clear_error(user, account, inline):
    tally: Counter[str] = Counter()

    @FUZZ
    @given(events=EVENTS)
    def example(events: tuple[dict, ...]) -> None:
        reset(user)
        # the sync keys events f"{calendar_id}/{event_id}"; occurred_at is the normalizer's
        items = [RawItem(f"{CALENDAR}/ev{i:05d}", None, event) for i, event in enumerate(events)]

        outcomes = store_and_normalize(user, account, "calendar", items)

        assert len(outcomes) == len(items)
        max_chars = get_config().max_body_chars
        for outcome in outcomes:
            payload = outcome.payload
            event_id = payload.get("id") if isinstance(payload, dict) else None
            if not isinstance(event_id, str) or not event_id:
                check_failure(outcome, "has no id", "not an object")
            elif outcome.status == "failed":
                # the one refusal a well-formed event may meet: a column it does not fit
                check_failure(outcome, "characters long (limit")
            else:
                assert (outcome.status, outcome.error) == ("normalized", ""), outcome
                meeting = check_interaction(user, "calendar", f"{CALENDAR}/{event_id}", max_chars)
                assert meeting.kind == "meeting"
                assert meeting.metadata["cancelled"] == (payload.get("status") == "cancelled")
        tally.update(["examples"])
        tally.update(outcome.status for outcome in outcomes)

    started = time.monotonic()
    example()
    print_figures("calendar", tally, started)
