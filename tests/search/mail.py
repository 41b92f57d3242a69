"""Test data for the search tests: e-mails of a user put in a batch, as normalization leaves
them (an Interaction per message, a raw event naming it in the batch)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from jobs.models import Interaction, RawEvent

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
_serial = itertools.count(1)


def mail(
    user,
    subject: str,
    body: str = "",
    *,
    at: datetime | None = None,
    outbound=False,
    kind: str | None = None,
) -> Interaction:
    n = next(_serial)
    return Interaction.objects.create(
        user=user,
        source="gmail" if kind != "meeting" else "calendar",
        source_id=f"s{n}-{uuid.uuid4().hex[:8]}",
        kind=kind or ("email_outbound" if outbound else "email_inbound"),
        occurred_at=at or NOW - timedelta(hours=n),
        subject=subject,
        body_text=body,
        thread_id=f"t{n}",
        direction="outbound" if outbound else "inbound",
        metadata={"message_id": f"<{n}@example.com>"},
    )


def in_batch(interactions, batch_id: uuid.UUID | None = None) -> uuid.UUID:
    """Raw events naming the interactions, in one batch (how the embed stage finds them); an
    interaction that has one already is moved into the batch (as a renormalization does)."""
    batch_id = batch_id or uuid.uuid4()
    interactions = list(interactions)
    for i in interactions:
        RawEvent.objects.filter(user_id=i.user_id, provider=i.source, source_id=i.source_id).update(
            batch_id=batch_id
        )
    have = set(
        RawEvent.objects.filter(batch_id=batch_id).values_list("user_id", "provider", "source_id")
    )
    interactions = [i for i in interactions if (i.user_id, i.source, i.source_id) not in have]
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


SAMPLE = [
    (
        "Invoice INV-1001 for March",
        "Hi Ada,\n\nThe payment for March is still outstanding. Could you check with "
        "finance?\n\nBest regards,\nBob\nAcme Corp | +1 555 0100\n\n"
        "On Mon, Mar 3, 2025 at 10:00 AM Ada <ada@example.com> wrote:\n"
        "> Quoted canary: flamingo-quoted-text\n> thanks\n",
    ),
    (
        "Lunch on Friday?",
        "Are you free for lunch on Friday near the harbour?\n\n-- \nCarol\n"
        "Signature canary: zeppelin-signature-text",
    ),
    (
        "Fwd: Contract renewal terms",
        "Can you look at the renewal before Thursday?\n\n"
        "---------- Forwarded message ---------\nFrom: Dan <dan@vendor.example>\n"
        "Date: Mon, Mar 3, 2025\nSubject: Contract renewal terms\nTo: Bob <bob@acme.example>\n\n"
        "Forward canary: walrus-forwarded-history\n",
    ),
    ("Quarterly report", "The quarterly report is attached: revenue grew in the northern region."),
    ("Shipping delay", "The container is held at the port; customs clearance pending."),
]


def sample_mailbox(user, *, count: int = len(SAMPLE)):
    """`count` e-mails (the SAMPLE, then numbered variants) in one batch: (interactions, batch)."""
    interactions = []
    for n in range(count):
        subject, body = SAMPLE[n % len(SAMPLE)]
        if n >= len(SAMPLE):
            subject, body = f"{subject} #{n}", f"{body}\nReference number {n}."
        interactions.append(mail(user, subject, body))
    return interactions, in_batch(interactions)
