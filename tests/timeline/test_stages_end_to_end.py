"""normalize -> extract_contacts -> write_timeline + update_rollups, through the job engine."""

from __future__ import annotations

import uuid

import pytest

from contacts.models import Contact, InteractionDuplicate, InteractionParticipant
from jobs.enqueue import enqueue
from jobs.models import Interaction, Job, RawEvent
from jobs.runner import run_due_jobs
from tests.contacts.factories import OWN, account_for, gmail
from timeline.models import TimelineEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def inline_jobs(pipeline_config):
    pipeline_config(handoff="none")


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


def test_item6_a_batch_flows_through_every_stage_and_the_numbers_add_up(user):
    account_for(user)
    batch = sync(
        user,
        [
            gmail(frm="Jane Doe <jane@acme.example>", to=[OWN, "bob@acme.example"]),
            gmail(frm=OWN, to=["Jane Doe <jane@acme.example>"], labels=("SENT",)),
            gmail(frm="Bob <bob@acme.example>", to=[OWN], cc=["jane@acme.example"]),
        ],
    )

    jobs = {j.kind: j for j in Job.objects.filter(batch_id=batch)}
    assert set(jobs) == {
        "normalize_gmail",
        "extract_contacts",
        "write_timeline",
        "update_rollups",
        "generate_insights",  # the insights app follows the rollups
        "embed",  # the search branch beside the people stages (tests/search)
    }
    assert {j.status for kind, j in jobs.items() if kind != "embed"} == {"succeeded"}
    pairs = set(InteractionParticipant.objects.values_list("interaction_id", "contact_id"))
    assert len(pairs) == 5
    assert set(TimelineEvent.objects.values_list("interaction_id", "contact_id")) == pairs
    assert jobs["write_timeline"].metrics["itemsInserted"] == 5
    jane = Contact.objects.get(primary_email="jane@acme.example")
    assert (jane.interaction_count, jane.inbound_count, jane.outbound_count) == (3, 2, 1)
    assert sorted(
        TimelineEvent.objects.filter(contact=jane).values_list("event_type", flat=True)
    ) == ["email_received", "email_received", "email_sent"]

    # the whole chain again for the same batch: nothing new anywhere
    enqueue("extract_contacts", user=user, batch_id=batch, dedupe_key=f"again:{batch}")
    run_due_jobs(until_empty=True)
    latest = {
        kind: Job.objects.filter(batch_id=batch, kind=kind).latest("id")
        for kind in ("write_timeline", "update_rollups")
    }
    assert latest["write_timeline"].pk != jobs["write_timeline"].pk
    assert latest["write_timeline"].metrics["itemsInserted"] == 0
    assert latest["write_timeline"].metrics["details"]["itemsUpdated"] == 0
    assert latest["update_rollups"].metrics["details"]["itemsUpdated"] == 0
    assert TimelineEvent.objects.count() == 5


def test_must_show_same_message_id_from_takeout_and_api_one_event_counted_once(user):
    account_for(user)
    same = "<quarterly-42@acme.example>"
    sync(user, [gmail(frm="Jane <jane@acme.example>", to=[OWN], message_id=same)])
    # the Takeout import of the same message, later, under another id
    sync(
        user,
        [gmail(frm="Jane <jane@acme.example>", to=[OWN], message_id=same, gmail_id="takeout-1")],
    )

    assert Interaction.objects.filter(user=user).count() == 2  # both rows kept
    assert InteractionDuplicate.objects.filter(user=user).count() == 1
    jane = Contact.objects.get(user=user, primary_email="jane@acme.example")
    (event,) = TimelineEvent.objects.filter(user=user)
    assert event.contact_id == jane.pk
    assert (jane.interaction_count, jane.inbound_count) == (1, 1)
    assert [r["id"] for r in jane.recent_interactions] == [event.interaction_id]
