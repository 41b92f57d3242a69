"""manage.py renormalize: replay a user's raw events (all, or the failed ones) inline."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from jobs.models import Interaction, RawEvent
from jobs.normalization.services import raw_events_normalize

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def messages(generated_messages) -> list[dict]:
    return generated_messages[:25]


@pytest.fixture
def normalized(user, messages) -> list[dict]:
    """The user's 25 messages and one broken payload, normalized once (that one failed)."""
    RawEvent.objects.bulk_create(
        RawEvent(user=user, provider="gmail", source_id=p["id"], payload=p)
        for p in [*messages, {"id": "x"}]
    )
    RawEvent.objects.create(
        user=user,
        provider="calendar",
        source_id="primary/evt",
        payload={"id": "evt", "start": {"date": "2026-03-01"}, "end": {"date": "2026-03-02"}},
    )
    raw_events_normalize(user_id=user.pk, provider="gmail")
    raw_events_normalize(user_id=user.pk, provider="calendar")
    return messages


def renormalize(*args: str) -> list[str]:
    out = StringIO()
    call_command("renormalize", *args, stdout=out)
    return out.getvalue().splitlines()


def test_failed_only_replays_a_payload_once_it_is_fixed(user, normalized):
    fixed = {**normalized[0], "id": "x"}
    RawEvent.objects.filter(source_id="x").update(payload=fixed)

    lines = renormalize("ada", "--failed-only")

    assert lines[0] == "reset 1 raw event(s) of ada to pending"
    assert lines[1] == "gmail: 1 raw event(s): 1 inserted, 0 updated, 0 unchanged, 0 failed"
    assert json.loads(lines[-1]) == {
        "itemsFetched": 1,
        "itemsInserted": 1,
        "itemsSkipped": 0,
        "itemsUpdated": 0,
        "failed": 0,
    }
    assert RawEvent.objects.get(source_id="x").status == "normalized"
    assert Interaction.objects.filter(user=user, source="gmail").count() == 26


def test_without_failed_only_it_replays_everything_chunk_by_chunk(
    user, normalized, pipeline_config
):
    pipeline_config(normalize_chunk_size=10)

    lines = renormalize("ADA@example.com", "--provider", "gmail")

    assert lines[0] == "reset 26 raw event(s) of ada to pending"
    assert [line.split(":")[0] for line in lines[1:-1]] == ["gmail"] * 3
    assert json.loads(lines[-1]) == {
        "itemsFetched": 26,
        "itemsInserted": 0,
        "itemsSkipped": 25,
        "itemsUpdated": 0,
        "failed": 1,
    }
    assert RawEvent.objects.get(provider="calendar").status == "normalized"


def test_it_finds_the_user_by_id_and_prints_only_the_counts_at_verbosity_0(user, normalized):
    (line,) = renormalize(str(user.pk), "--provider", "calendar", "--verbosity", "0")

    assert json.loads(line)["itemsFetched"] == 1


def test_an_unknown_user_is_a_clear_error(user):
    with pytest.raises(CommandError) as error:
        renormalize("nobody")
    assert str(error.value) == "user 'nobody' does not exist"
    assert error.value.returncode == 1  # what manage.py exits with
