"""Test data for the insights rules: contacts, e-mails in threads and meetings, written as the
pipeline writes them (interactions with participants), and their rollups refreshed."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from contacts.models import Contact
from contacts.rollups import contact_rollups_refresh
from insights.conf import build_config
from insights.models import Insight
from insights.rules.base import fingerprint
from jobs.models import Interaction
from tests.timeline.people import person, take_part

# A Wednesday, so "last week" is 2025-W09 (24 Feb - 3 Mar 2025).
NOW = datetime(2025, 3, 5, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
_serial = itertools.count(1)


def config(**overrides):
    return build_config(overrides)


def mail(
    user,
    contact: Contact,
    *,
    at: datetime,
    outbound: bool = False,
    thread: str | None = None,
    subject: str = "Hello",
    body: str = "Thanks.",
    estimated: bool = False,
) -> Interaction:
    """An e-mail between the user and `contact` (from them, or to them when outbound)."""
    n = next(_serial)
    interaction = Interaction.objects.create(
        user=user,
        source="gmail",
        source_id=f"ins-m{n}",
        kind="email_outbound" if outbound else "email_inbound",
        occurred_at=at,
        occurred_at_estimated=estimated,
        subject=subject,
        body_text=body,
        thread_id=thread if thread is not None else f"thread-{n}",
        direction="outbound" if outbound else "inbound",
        metadata={"message_id": f"<ins{n}@example.com>"},
    )
    take_part(interaction, contact, role="to" if outbound else "from")
    return interaction


def meeting_with(
    user,
    contacts: list[Contact],
    *,
    at: datetime,
    subject: str = "Sync",
    cancelled: bool = False,
    responses: dict[int, str] | None = None,
    own_response: str = "accepted",
) -> Interaction:
    n = next(_serial)
    interaction = Interaction.objects.create(
        user=user,
        source="calendar",
        source_id=f"primary/ins-e{n}",
        kind="meeting",
        occurred_at=at,
        subject=subject,
        metadata={
            "cancelled": cancelled,
            "status": "cancelled" if cancelled else "confirmed",
            "duration_s": 1800,
            "start": at.isoformat(),
            "attendees": [
                {"email": "ada@example.com", "self": True, "response_status": own_response}
            ],
        },
    )
    for contact in contacts:
        take_part(
            interaction,
            contact,
            role="attendee",
            response_status=(responses or {}).get(contact.pk, "accepted"),
        )
    return interaction


def refresh(user, *contacts: Contact, now: datetime = NOW) -> None:
    contact_rollups_refresh(user_id=user.pk, contact_ids=[c.pk for c in contacts], now=now)
    for contact in contacts:
        contact.refresh_from_db()


def exchange(
    user, contact: Contact, *, days_ago: list[float], now: datetime = NOW
) -> list[Interaction]:
    """E-mails with `contact` that many days before `now`, alternating received and sent
    (the first received), each in its own thread, with nothing to answer."""
    return [
        mail(user, contact, at=now - d * DAY, outbound=bool(n % 2), body="Noted, thanks.")
        for n, d in enumerate(days_ago)
    ]


def stored(
    user,
    title: str,
    *,
    kind: str = "awaiting_reply",
    status: str = "new",
    score=60.0,
    contact: Contact | None = None,
    evidence: dict | None = None,
) -> Insight:
    """An insight row as generate_insights would leave it (for admin and command tests)."""
    return Insight.objects.create(
        user=user,
        kind=kind,
        contact=contact,
        fingerprint=fingerprint(kind, f"test:{title}"),
        status=status,
        title=title,
        summary=f"{title}: summary",
        heuristic_summary=f"{title}: summary",
        evidence=evidence
        if evidence is not None
        else {"days_waiting": 4.5, "interaction_ids": [1, 2]},
        score=score,
        content_hash="c",
        basis_hash="b",
        expires_at=NOW + 14 * DAY,
    )


__all__ = [
    "DAY",
    "NOW",
    "config",
    "exchange",
    "mail",
    "meeting_with",
    "person",
    "refresh",
    "stored",
]
