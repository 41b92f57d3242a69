"""manage.py renormalize: replay a user's raw events (all, or the failed ones) inline."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from contacts.models import InteractionParticipant
from jobs.models import Interaction, Job, JobStatus, RawEvent
from jobs.normalization.services import raw_events_normalize
from jobs.runner import run_due_jobs
from timeline.models import TimelineEvent

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


def test_fixa_item1_renormalize_starts_the_people_stages_for_what_it_normalized(
    user, normalized, pipeline_config
):
    pipeline_config(handoff="none")
    # normalized the way the fixture did (no job): no people stage ever ran for these
    assert not InteractionParticipant.objects.filter(user=user).exists()

    err = StringIO()
    call_command("renormalize", "ada", stdout=StringIO(), stderr=err)
    (extract,) = Job.objects.filter(user=user, kind="extract_contacts")
    (embed,) = Job.objects.filter(user=user, kind="embed")
    assert err.getvalue().splitlines() == [
        f"started extract_contacts job #{extract.pk} for batch {extract.batch_id}",
        f"started embed job #{embed.pk} for batch {extract.batch_id}",
    ]
    run_due_jobs(until_empty=True)

    extract.refresh_from_db()
    assert extract.status == JobStatus.SUCCEEDED
    jobs = {j.kind: j for j in Job.objects.filter(batch_id=extract.batch_id)}
    assert {jobs[k].status for k in ("write_timeline", "update_rollups")} == {JobStatus.SUCCEEDED}
    # every raw event it normalized is in that batch: 25 mails, the broken one, the meeting
    assert RawEvent.objects.filter(user=user, batch_id=extract.batch_id).count() == 27
    assert extract.metrics["itemsFetched"] == 26
    participants = InteractionParticipant.objects.filter(user=user)
    assert participants.count() == extract.metrics["itemsInserted"]
    # (newsletters and the like are excluded by rule: most mails, not all, have participants)
    with_people = participants.values("interaction_id")
    assert Interaction.objects.filter(user=user, source="gmail", pk__in=with_people).count() >= 20
    assert (
        TimelineEvent.objects.filter(user=user).count()
        == jobs["write_timeline"].metrics["itemsInserted"]
    )
    assert TimelineEvent.objects.filter(user=user).exists()


def test_fixa_item1_renormalize_with_nothing_to_do_starts_no_stage(user, pipeline_config):
    pipeline_config(handoff="none")

    renormalize("ada", "--failed-only")

    assert not Job.objects.exists()
