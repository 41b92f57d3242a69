"""Issue 9, end to end on the emulator's generated mailbox (inline workers): normalization starts
extract_contacts for the batch, and the numbers add up: every participant address of every
interaction is linked to a contact or excluded by a stated rule."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from contacts.conf import get_config
from contacts.identity import exclusion_reason, matching_key, own_keys
from contacts.models import Contact, InteractionDuplicate, InteractionParticipant
from jobs.enqueue import enqueue
from jobs.models import GoogleAccount, Interaction, Job, RawEvent
from jobs.runner import run_due_jobs
from jobs.sync.convert import gmail_message_from_rfc822
from tests.fixtures.emulator import ALIAS, OWNER

pytestmark = pytest.mark.django_db


def test_numbers_add_up_on_the_generated_mailbox(user, generated_mailbox, pipeline_config):
    pipeline_config(handoff="none")
    GoogleAccount.objects.create(user=user, email=OWNER, addresses=[OWNER, ALIAS])
    batch = uuid.uuid4()
    messages = [
        gmail_message_from_rfc822(
            m.raw, label_ids=list(m.label_ids), internal_date_ms=m.internal_date_ms
        )
        for m in generated_mailbox.messages
    ]
    events = [{**e, "_calendarId": c.id} for c in generated_mailbox.calendars for e in c.events]
    RawEvent.objects.bulk_create(
        [
            RawEvent(user=user, provider="gmail", source_id=m["id"], payload=m, batch_id=batch)
            for m in messages
        ]
        + [
            RawEvent(
                user=user,
                provider="calendar",
                source_id=f"{e['_calendarId']}/{e['id']}",
                payload=e,
                batch_id=batch,
            )
            for e in events
        ]
    )
    for kind in ("normalize_gmail", "normalize_calendar"):
        enqueue(kind, user=user, batch_id=batch, dedupe_key=f"{kind}:{user.pk}:{batch}")
    run_due_jobs(until_empty=True)

    jobs = list(Job.objects.filter(kind="extract_contacts"))
    assert jobs and all(j.status == "succeeded" for j in jobs)
    details = Counter()
    excluded = Counter()
    for job in jobs:
        details.update({k: v for k, v in job.metrics["details"].items() if k != "excluded"})
        excluded.update(job.metrics["details"]["excluded"])
    assert details["participantsSeen"] == details["participantsLinked"] + sum(excluded.values())
    assert InteractionParticipant.objects.filter(user=user).count() == details["participantsLinked"]
    assert Contact.objects.filter(user=user).count() == details["contactsCreated"] > 20

    # recount independently from the interactions themselves
    own = own_keys([OWNER, ALIAS])
    linked = set(
        InteractionParticipant.objects.filter(user=user).values_list(
            "interaction_id", "identity__key", "role"
        )
    )
    duplicates = set(
        InteractionDuplicate.objects.filter(user=user).values_list("interaction_id", flat=True)
    )
    raw_headers = {
        r.source_id: {h["name"].lower(): h["value"] for h in r.payload["payload"]["headers"]}
        for r in RawEvent.objects.filter(user=user, provider="gmail")
    }
    patterns = get_config().automated_patterns
    seen = 0
    reasons: Counter[str] = Counter()
    for interaction in Interaction.objects.filter(user=user):
        meta = interaction.metadata
        if interaction.source == "gmail":
            addresses = [("from", meta["from"])] if meta.get("from") else []
            for role in ("to", "cc", "bcc", "reply_to"):
                addresses += [(role, a) for a in meta.get(role) or []]
            headers = raw_headers[interaction.source_id]
            bulk = "list-unsubscribe" in headers or headers.get("precedence", "").strip() in (
                "bulk",
                "list",
                "junk",
            )
        else:
            addresses = [("organizer", meta["organizer"])] if meta.get("organizer") else []
            addresses += [("attendee", a) for a in meta.get("attendees") or []]
            bulk = False
        done = set()
        for role, address in addresses:
            seen += 1
            key = matching_key(address["email"])
            if interaction.pk in duplicates:
                reasons["duplicate_interaction"] += 1
                continue
            reason = exclusion_reason(
                key, own_keys=own, patterns=patterns, own=address.get("self") is True
            )
            if reason:
                reasons[reason] += 1
                assert (interaction.pk, key, role) not in linked
            elif (key, role) in done:
                reasons["repeated"] += 1
            elif (interaction.pk, key, role) in linked:
                done.add((key, role))
            else:
                # the only other rule: bulk mail from someone the user never wrote to
                assert bulk and interaction.kind == "email_inbound", (interaction.pk, key, role)
                reasons["bulk"] += 1
    assert reasons == excluded
    assert excluded["own_address"] > 0 and excluded["automated"] > 0
    assert seen == details["participantsSeen"]
    assert not Contact.objects.filter(primary_email__in=own).exists()

    # a re-run of the stage for the batch inserts nothing
    enqueue("extract_contacts", user=user, batch_id=batch, dedupe_key=f"again:{batch}")
    run_due_jobs(until_empty=True)
    again = Job.objects.filter(kind="extract_contacts").order_by("-id").first()
    assert again.metrics["itemsInserted"] == 0
    assert again.metrics["details"]["contactsCreated"] == 0
