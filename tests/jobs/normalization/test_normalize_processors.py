"""normalize_gmail / normalize_calendar jobs: a batch's raw events to interactions, end to end."""

from __future__ import annotations

import uuid

import pytest

from jobs.context import Metrics
from jobs.dispatcher import REGISTRY, ProcessorSpec
from jobs.enqueue import enqueue
from jobs.models import Interaction, Job, RawEvent
from jobs.runner import run_due_jobs

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def inline_jobs(pipeline_config):
    pipeline_config(handoff="none")


@pytest.fixture(scope="module")
def messages(generated_messages) -> list[dict]:
    return generated_messages[:60]


def store(user, payloads, *, provider="gmail", batch_id=None) -> uuid.UUID:
    batch_id = batch_id or uuid.uuid4()
    RawEvent.objects.bulk_create(
        RawEvent(
            user=user,
            provider=provider,
            source_id=f"{p['_calendarId']}/{p['id']}" if provider == "calendar" else p["id"],
            payload=p,
            batch_id=batch_id,
        )
        for p in payloads
    )
    return batch_id


def run(kind: str, user, batch_id: uuid.UUID, **payload) -> list[Job]:
    """Enqueue the stage as the sync does, run everything due; the jobs of `kind`, in order."""
    enqueue(kind, user=user, payload=payload, batch_id=batch_id, dedupe_key=f"{kind}:{batch_id}")
    run_due_jobs(until_empty=True)
    return list(Job.objects.filter(kind=kind).order_by("id"))


def test_a_batch_of_gmail_raw_events_becomes_interactions(user, account, messages):
    batch = store(user, [*messages[:40], {"id": "broken"}])
    later = store(user, messages[40:45])

    (job,) = run("normalize_gmail", user, batch, account_id=account.pk)

    assert job.status == "succeeded"
    assert {key: job.metrics[key] for key in ("itemsFetched", "itemsInserted", "itemsSkipped")} == {
        "itemsFetched": 41,
        "itemsInserted": 40,
        "itemsSkipped": 0,
    }
    assert job.metrics["details"] == {"itemsUpdated": 0, "failed": 1}
    assert job.metrics["timedOut"] is False
    assert Interaction.objects.filter(user=user).count() == 40
    statuses = RawEvent.objects.filter(batch_id=batch).values_list("status", flat=True)
    assert sorted(set(statuses)) == ["failed", "normalized"]
    assert set(RawEvent.objects.filter(batch_id=later).values_list("status", flat=True)) == {
        "pending"
    }


def test_a_batch_of_calendar_raw_events_becomes_meetings(user, account, generated_mailbox):
    events = [
        {**event, "_calendarId": calendar.id}
        for calendar in generated_mailbox.calendars
        for event in calendar.events
    ]
    batch = store(user, events, provider="calendar")

    (job,) = run("normalize_calendar", user, batch, account_id=account.pk)

    assert (job.status, job.metrics["itemsInserted"]) == ("succeeded", len(events))
    assert Interaction.objects.filter(user=user, kind="meeting").count() == len(events)
    assert not RawEvent.objects.filter(status="pending").exists()


def test_without_only_batch_it_takes_every_pending_raw_event_of_the_user(
    user, other_user, messages
):
    batch = store(user, messages[:5])
    store(user, messages[5:8])
    store(other_user, messages[:3], batch_id=batch)

    (job,) = run("normalize_gmail", user, batch, only_batch=False)

    assert job.metrics["itemsInserted"] == 8
    assert set(RawEvent.objects.filter(user=other_user).values_list("status", flat=True)) == {
        "pending"
    }


def test_past_its_deadline_it_stops_between_chunks_and_continues_in_the_same_batch(
    user, messages, pipeline_config
):
    pipeline_config(normalize_chunk_size=10, job_wall_clock_cap_s=0.0)
    batch = store(user, messages[:25])

    jobs = run("normalize_gmail", user, batch)

    assert [(j.status, j.metrics["itemsFetched"], j.metrics["timedOut"]) for j in jobs] == [
        ("succeeded", 10, True),
        ("succeeded", 10, True),
        ("succeeded", 5, False),
    ]
    assert {j.batch_id for j in jobs} == {batch}
    assert Interaction.objects.filter(user=user).count() == 25


def test_when_done_it_starts_the_next_stage_once_for_the_batch(user, messages, monkeypatch):
    ran = []
    spec = ProcessorSpec(
        kind="extract_contacts", func=lambda job, ctx: ran.append(job) or Metrics()
    )
    monkeypatch.setitem(REGISTRY, "extract_contacts", spec)
    batch = store(user, messages[:5])

    (job,) = run("normalize_gmail", user, batch)

    (following,) = ran
    assert (following.parent_id, following.batch_id) == (job.pk, batch)
    # a lane of its own (this normalization's), and the stand-in declares no `source`
    assert following.dedupe_key == f"extract_contacts:{user.pk}:{batch}:{job.pk}"
    assert following.payload == {}
