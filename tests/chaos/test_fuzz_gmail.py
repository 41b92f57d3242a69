"""Fuzz: hostile Gmail users.messages resources through the sync's store and the normalize job.

Every example stores one to three generated resources (format=full trees with random
corruption, format=raw ones, nesting hundreds deep, huge and thousand-fold headers, bad base64,
unknown charsets, impossible dates) as the Gmail sync stores them, runs normalize_gmail and the
stages after it, and checks the oracle: no job fails, a resource with an id and a payload object
becomes its interaction (within the body cap, no NUL, dated), anything else is marked failed
with a sentence that names what is missing.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.config import get_config
from jobs.sync.gmail import message_item
from jobs.sync.raw_events import RawItem
from tests.chaos.fuzzing import (
    check_failure,
    check_interaction,
    print_figures,
    reset,
    store_and_normalize,
)
from tests.chaos.strategies import FUZZ, gmail_messages

pytestmark = pytest.mark.django_db

MESSAGES = st.integers(1, 3).flatmap(
    lambda n: st.tuples(*(gmail_messages(f"{i:016x}") for i in range(n)))
)


@pytest.fixture
def inline(pipeline_config):
    pipeline_config(handoff="none")


def stored_item(message: dict, source_id: str) -> RawItem:
    """What the sync stores for a fetched message (its occurred_at from internalDate)."""
    return RawItem(source_id, message_item({**message, "id": source_id}).occurred_at, message)


def test_hostile_gmail_messages_normalize_or_fail_with_a_clear_error(user, account, inline):
    tally: Counter[str] = Counter()

    @FUZZ
    @given(messages=MESSAGES)
    def example(messages: tuple[dict, ...]) -> None:
        reset(user)
        items = [stored_item(m, f"{i:016x}") for i, m in enumerate(messages)]

        outcomes = store_and_normalize(user, account, "gmail", items)

        assert len(outcomes) == len(items)
        max_chars = get_config().max_body_chars
        for outcome in outcomes:
            payload = outcome.payload
            message_id = payload.get("id") if isinstance(payload, dict) else None
            if not isinstance(message_id, str) or not message_id:
                check_failure(outcome, "has no id", "not an object")
            elif not isinstance(payload.get("payload"), dict):
                check_failure(outcome, "has no payload")
            else:
                assert (outcome.status, outcome.error) == ("normalized", ""), outcome
                interaction = check_interaction(user, "gmail", message_id, max_chars)
                assert interaction.kind in ("email_inbound", "email_outbound")
        tally.update(["examples"])
        tally.update(outcome.status for outcome in outcomes)

    started = time.monotonic()
    example()
    print_figures("gmail", tally, started)
