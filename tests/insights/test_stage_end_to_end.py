"""generate_insights through the job engine: after update_rollups in a sync's batch (the
contacts the batch touched), after the nightly all-contacts rollups (every contact), fenced and
continued past its deadline, idempotent on a rerun."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from contacts.models import Contact
from contacts.rollups import rollups_nightly
from insights.models import Insight
from insights.services import insight_set_status
from jobs.enqueue import enqueue
from jobs.models import Job, RawEvent
from jobs.runner import run_due_jobs
from tests.contacts.factories import OWN, account_for, gmail
from tests.insights.helpers import person

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def inline_jobs(pipeline_config):
    pipeline_config(handoff="none")


def with_body(message: dict, text: str) -> dict:
    message["payload"]["body"]["data"] = base64.urlsafe_b64encode(text.encode()).decode()
    return message


def sync(user, mails) -> uuid.UUID:
    """Store the mails as one batch of raw events and run the stages the sync starts."""
    batch = uuid.uuid4()
    RawEvent.objects.bulk_create(
        RawEvent(user=user, provider="gmail", source_id=m["id"], payload=m, batch_id=batch)
        for m in mails
    )
    enqueue("normalize_gmail", user=user, batch_id=batch, dedupe_key=f"n:{user.pk}:{batch}")
    run_due_jobs(until_empty=True)
    return batch


def conversation(now):
    """Jane: four e-mails each way over the last weeks, and a question 5 days ago."""
    jane = "Jane Doe <jane@acme.example>"
    mails = []
    for n in range(4):
        mails.append(gmail(frm=jane, to=[OWN], at=now - (30 - 5 * n) * DAY))
        mails.append(gmail(frm=OWN, to=[jane], labels=("SENT",), at=now - (29 - 5 * n) * DAY))
    question = with_body(
        gmail(frm=jane, to=[OWN], subject="Invoice", at=now - 5 * DAY),
        "Could you confirm the invoice address?\n\nOn Mon, Ada wrote:\n> Sent. Anything else?",
    )
    return [*mails, question]


def test_it_runs_after_update_rollups_in_the_batch_and_a_rerun_changes_nothing(user):
    account_for(user)
    batch = sync(user, conversation(timezone.now()))

    jobs = {j.kind: j for j in Job.objects.filter(batch_id=batch)}
    assert set(jobs) == {
        "normalize_gmail",
        "extract_contacts",
        "write_timeline",
        "update_rollups",
        "generate_insights",
        "embed",  # the search branch beside the people stages (tests/search)
    }
    assert {j.status for kind, j in jobs.items() if kind != "embed"} == {"succeeded"}
    generate = jobs["generate_insights"]
    assert generate.parent_id == jobs["update_rollups"].pk
    jane = Contact.objects.get(user=user, primary_email="jane@acme.example")
    kinds = dict(Insight.objects.filter(user=user).values_list("kind", "contact_id"))
    assert kinds["relationship_strength"] == jane.pk
    assert kinds["awaiting_reply"] == jane.pk
    awaiting = Insight.objects.get(user=user, kind="awaiting_reply")
    assert awaiting.open_questions[0]["text"] == "Could you confirm the invoice address?"
    assert generate.metrics["itemsInserted"] == Insight.objects.filter(user=user).count()
    assert generate.metrics["details"]["byKind"]["awaiting_reply"] == 1
    assert generate.metrics["itemsFetched"] >= 1  # jane (touched), threads, the digest

    # dismissed, then the chain again for the same batch: the same rows, still dismissed
    insight_set_status(user=user, insight_ids=[awaiting.pk], status="dismissed")
    before = set(Insight.objects.filter(user=user).values_list("pk", "fingerprint"))
    enqueue("extract_contacts", user=user, batch_id=batch, dedupe_key=f"again:{batch}")
    run_due_jobs(until_empty=True)
    again = Job.objects.filter(batch_id=batch, kind="generate_insights").latest("id")
    assert again.pk != generate.pk and again.status == "succeeded"
    assert again.metrics["itemsInserted"] == 0
    assert set(Insight.objects.filter(user=user).values_list("pk", "fingerprint")) == before
    assert Insight.objects.get(pk=awaiting.pk).status == "dismissed"


def test_a_batch_run_looks_at_the_contacts_it_touched_the_nightly_run_at_everyone(user):
    account_for(user)
    now = timezone.now()
    sync(user, conversation(now))
    bob = "Bob <bob@acme.example>"
    later = sync(
        user,
        [gmail(frm=bob, to=[OWN], at=now - (9 - n) * DAY) for n in range(3)]
        + [gmail(frm=OWN, to=[bob], labels=("SENT",), at=now - 2 * DAY)],
    )

    batch_run = Job.objects.get(batch_id=later, kind="generate_insights")
    strength = Insight.objects.filter(user=user, kind="relationship_strength")
    assert strength.count() == 2
    # only Bob was evaluated per contact (Jane's insight is from the first batch)
    jane_strength = strength.get(contact__primary_email="jane@acme.example")
    assert jane_strength.updated_at < batch_run.started_at

    assert rollups_nightly() == 1
    run_due_jobs(until_empty=True)
    nightly = Job.objects.filter(kind="generate_insights").latest("id")
    assert nightly.status == "succeeded"
    assert nightly.parent.kind == "update_rollups" and nightly.parent.payload["all_contacts"]
    contacts = Contact.objects.filter(user=user, merged_into__isnull=True).count()
    assert contacts == 2
    # every contact; the threads whose last message is theirs (each factory message has a
    # thread of its own: Jane's four of the last 30 days, Bob's three); no meeting; the digest
    assert nightly.metrics["itemsFetched"] == contacts + (4 + 3) + 0 + 1
    assert nightly.metrics["details"]["byKind"]["relationship_strength"] == 2


def test_past_its_deadline_it_continues_phase_by_phase(user, other_user, pipeline_config, settings):
    settings.CRM_PIPELINE_INSIGHTS = {"chunk_size": 10}
    now = timezone.now()
    for n in range(25):
        contact = person(user, f"p{n}@acme.example")
        contact.interaction_count = 5
        contact.last_interaction_at = now - DAY
        contact.save()
    pipeline_config(job_wall_clock_cap_s=0.0)

    enqueue("generate_insights", user=user, payload={"contacts": "all"}, dedupe_key="g:test")
    run_due_jobs(until_empty=True)

    jobs = list(Job.objects.filter(kind="generate_insights").order_by("id"))
    assert [j.status for j in jobs] == ["succeeded"] * 8
    assert [j.payload.get("phase", "contacts") for j in jobs] == [
        "contacts",
        "contacts",
        "contacts",
        "awaiting_reply",
        "meeting_prep",
        "weekly_digest",
        "expire",
        "llm",
    ]
    assert [j.metrics["itemsFetched"] for j in jobs[:3]] == [10, 10, 5]
    assert [j.metrics["timedOut"] for j in jobs] == [True] * 7 + [False]
    assert Insight.objects.filter(user=user, kind="relationship_strength").count() == 25
    assert not Insight.objects.filter(user=other_user).exists()


def test_a_bad_payload_fails_at_once(user):
    job = enqueue("generate_insights", user=user, payload={"phase": "gossip"}, dedupe_key="g:bad")
    run_due_jobs(until_empty=True)
    job.refresh_from_db()
    assert job.status == "failed"
    assert "phase must be one of contacts, awaiting_reply" in job.last_error
