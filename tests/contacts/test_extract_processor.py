"""Issue 9, the extract_contacts job: runs after normalization, per batch, resumable."""

from __future__ import annotations

import uuid

import pytest

from contacts.models import Contact, InteractionParticipant
from contacts.selectors import batch_interaction_ids
from jobs.context import Metrics
from jobs.dispatcher import REGISTRY, ProcessorSpec
from jobs.enqueue import enqueue
from jobs.models import Job, RawEvent
from jobs.runner import run_due_jobs
from tests.contacts.factories import OWN, account_for, event, gmail, ingest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def inline_jobs(pipeline_config):
    pipeline_config(handoff="none")


def store(user, mails) -> uuid.UUID:
    batch = uuid.uuid4()
    RawEvent.objects.bulk_create(
        RawEvent(user=user, provider="gmail", source_id=m["id"], payload=m, batch_id=batch)
        for m in mails
    )
    return batch


def sync_done(user, batch) -> None:
    """What the sync stage does: start normalization for the batch; then run everything."""
    enqueue("normalize_gmail", user=user, batch_id=batch, dedupe_key=f"n:{user.pk}:{batch}")
    run_due_jobs(until_empty=True)


def test_extract_contacts_runs_after_normalization_with_its_metrics(user, monkeypatch):
    started = []
    for kind in ("write_timeline", "update_rollups"):
        spec = ProcessorSpec(kind=kind, func=lambda job, ctx: started.append(job) or Metrics())
        monkeypatch.setitem(REGISTRY, kind, spec)
    account_for(user)
    batch = store(
        user,
        [
            gmail(frm="Jane <jane@acme.example>", to=[OWN, "bob@acme.example"]),
            gmail(frm="noreply@acme.example", to=[OWN]),
        ],
    )
    sync_done(user, batch)
    (job,) = Job.objects.filter(kind="extract_contacts")
    normalize = Job.objects.get(kind="normalize_gmail")
    # its own lane (the normalization that started it), the batch's Gmail interactions
    assert (job.status, job.batch_id, job.dedupe_key, job.payload) == (
        "succeeded",
        batch,
        f"extract_contacts:{user.pk}:{batch}:{normalize.pk}",
        {"source": "gmail", "after_id": 0},
    )
    assert job.metrics["itemsFetched"] == 2
    assert job.metrics["itemsInserted"] == 2 == InteractionParticipant.objects.count()
    details = job.metrics["details"]
    assert details["contactsCreated"] == 2
    assert details["excluded"] == {"own_address": 2, "automated": 1}
    assert details["participantsSeen"] == 5
    # the next stages start once, for the batch (stand-ins without a `source` get none)
    assert sorted(j.kind for j in started) == ["update_rollups", "write_timeline"]
    assert {j.batch_id for j in started} == {batch}
    assert [j.payload for j in started] == [{}, {}]
    assert {j.dedupe_key for j in started} == {
        f"write_timeline:{user.pk}:{batch}:{job.pk}",
        f"update_rollups:{user.pk}:{batch}:{job.pk}",
    }


def test_extract_contacts_past_its_deadline_continues_in_the_same_batch(
    user, pipeline_config, settings
):
    settings.CRM_PIPELINE_CONTACTS = {"chunk_size": 10}
    account_for(user)
    batch = store(user, [gmail(frm=f"P{i} <p{i}@acme.example>", to=[OWN]) for i in range(25)])
    enqueue("normalize_gmail", user=user, batch_id=batch, dedupe_key=f"n:{user.pk}:{batch}")
    run_due_jobs(until_empty=True)
    Job.objects.filter(kind="extract_contacts").delete()
    Contact.objects.all().delete()
    pipeline_config(job_wall_clock_cap_s=0.0)
    enqueue("extract_contacts", user=user, batch_id=batch, dedupe_key=f"e:{user.pk}:{batch}")
    run_due_jobs(until_empty=True)
    jobs = list(Job.objects.filter(kind="extract_contacts").order_by("id"))
    assert [(j.status, j.metrics["itemsFetched"], j.metrics["timedOut"]) for j in jobs] == [
        ("succeeded", 10, True),
        ("succeeded", 10, True),
        ("succeeded", 5, False),
    ]
    assert {j.batch_id for j in jobs} == {batch}
    assert Contact.objects.filter(user=user).count() == 25


def test_extract_contacts_takes_the_batch_interactions_of_its_source_only(user):
    account_for(user)
    batch = ingest(
        user,
        mails=[gmail(frm="Jane <jane@acme.example>", to=[OWN])],
        events=[event(attendees=[{"email": "ravi@globex.example", "responseStatus": "accepted"}])],
    )
    for source in ("calendar", "gmail"):
        enqueue(
            "extract_contacts",
            user=user,
            batch_id=batch,
            payload={"source": source},
            dedupe_key=f"e:{source}:{batch}",
        )
        run_due_jobs(kinds=["extract_contacts"], until_empty=True)
        people = set(
            InteractionParticipant.objects.filter(user=user).values_list(
                "contact__primary_email", flat=True
            )
        )
        # the Calendar job links the meeting's attendee only; the Gmail one then adds Jane
        assert people == (
            {"ravi@globex.example"}
            if source == "calendar"
            else {"ravi@globex.example", "jane@acme.example"}
        )
    assert batch_interaction_ids(user_id=user.pk, batch_id=batch, source="") == sorted(
        batch_interaction_ids(user_id=user.pk, batch_id=batch, source="gmail")
        + batch_interaction_ids(user_id=user.pk, batch_id=batch, source="calendar")
    )


def test_an_unknown_source_fails_the_job_with_a_clear_error(user):
    account_for(user)
    batch = ingest(user, mails=[gmail(frm="Jane <jane@acme.example>", to=[OWN])])
    job = enqueue(
        "extract_contacts", user=user, batch_id=batch, payload={"source": "gmial"}, dedupe_key="e"
    )
    run_due_jobs(kinds=["extract_contacts"], until_empty=True)
    job.refresh_from_db()
    assert job.status == "failed" and job.attempts == 1  # permanent: not retried
    assert "source must be one of gmail, calendar or empty, got 'gmial'" in job.last_error
    assert not InteractionParticipant.objects.filter(user=user).exists()
