"""Test data for the timeline and rollups stages: contacts, interactions and participants made
directly (as extract_contacts would write them), and the raw events that put them in a batch."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from contacts.identity import matching_key
from contacts.models import Contact, ContactIdentity, InteractionParticipant
from jobs.models import Interaction, RawEvent

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
_serial = itertools.count(1)


def person(user, email: str, name: str = "") -> Contact:
    contact = Contact.objects.create(
        user=user, display_name=name or email.split("@")[0].title(), primary_email=email
    )
    ContactIdentity.objects.create(
        user=user, contact=contact, value=email, key=matching_key(email) or email
    )
    return contact


def email(user, *, outbound=False, at=NOW, subject="Hello", source="gmail", source_id=None, **meta):
    n = next(_serial)
    return Interaction.objects.create(
        user=user,
        source=source,
        source_id=source_id or f"m{n}",
        kind="email_outbound" if outbound else "email_inbound",
        occurred_at=at,
        subject=subject,
        thread_id=f"t{n}",
        direction="outbound" if outbound else "inbound",
        metadata={"snippet": f"snippet {n}", "message_id": f"<{n}@example.com>", **meta},
    )


def meeting(user, *, at=NOW, subject="Sync", cancelled=False, **meta):
    n = next(_serial)
    return Interaction.objects.create(
        user=user,
        source="calendar",
        source_id=f"primary/e{n}",
        kind="meeting",
        occurred_at=at,
        subject=subject,
        metadata={
            "cancelled": cancelled,
            "status": "cancelled" if cancelled else "confirmed",
            "meeting_link": "https://meet.example/abc",
            "duration_s": 1800,
            "start": at.isoformat(),
            **meta,
        },
    )


def take_part(interaction, contact, role="from", response_status=""):
    identity = contact.identities.first()
    return InteractionParticipant.objects.create(
        user_id=interaction.user_id,
        interaction=interaction,
        contact=contact,
        identity=identity,
        role=role,
        response_status=response_status,
        occurred_at=interaction.occurred_at,
    )


def in_batch(interactions, batch_id: uuid.UUID | None = None) -> uuid.UUID:
    """Raw events naming the interactions, in one batch (how a stage finds its interactions)."""
    batch_id = batch_id or uuid.uuid4()
    RawEvent.objects.bulk_create(
        RawEvent(
            user_id=i.user_id,
            provider=i.source,
            source_id=i.source_id,
            payload={},
            batch_id=batch_id,
            status="normalized",
        )
        for i in interactions
    )
    return batch_id


def many(user, count: int, contacts: list[Contact], *, start=NOW) -> list[Interaction]:
    """`count` inbound e-mails a day apart, each with every contact of `contacts` taking part."""
    interactions = Interaction.objects.bulk_create(
        Interaction(
            user=user,
            source="gmail",
            source_id=f"bulk-{uuid.uuid4().hex}",
            kind="email_inbound",
            occurred_at=start - timedelta(days=n),
            subject=f"Message {n}",
            direction="inbound",
            metadata={"snippet": "..."},
        )
        for n in range(count)
    )
    identities = {c.pk: c.identities.first() for c in contacts}
    InteractionParticipant.objects.bulk_create(
        InteractionParticipant(
            user=user,
            interaction=i,
            contact=c,
            identity=identities[c.pk],
            role="from" if n == 0 else "to",
            occurred_at=i.occurred_at,
        )
        for i in interactions
        for n, c in enumerate(contacts)
    )
    return interactions
