"""The facts the rules read, as plain values (insights.selectors builds them from the database;
a test builds them by hand)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ContactFacts:
    """A live contact's rollups (contacts.rollups) and its next meeting."""

    id: int
    name: str
    email: str
    last_interaction_at: datetime | None
    last_inbound_at: datetime | None
    last_outbound_at: datetime | None
    interaction_count: int
    interactions_90d: int
    inbound_count: int
    outbound_count: int
    meeting_count: int
    typical_gap_days: float | None
    # The newest interactions (the rollup's recent_interactions), newest first.
    recent_interaction_ids: tuple[int, ...] = ()
    # The first meeting with the contact that has not started yet, if any.
    next_meeting_at: datetime | None = None

    @property
    def label(self) -> str:
        return self.name or self.email or f"contact {self.id}"

    @property
    def received(self) -> int:
        """E-mails received with the contact, plus meetings (a meeting goes both ways)."""
        return self.inbound_count + self.meeting_count

    @property
    def sent(self) -> int:
        """E-mails sent to the contact, plus meetings."""
        return self.outbound_count + self.meeting_count


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """An inbound e-mail: who sent it (a contact of the user) and its text."""

    id: int
    occurred_at: datetime
    subject: str
    body: str
    contact_id: int
    contact_name: str
    contact_email: str

    @property
    def sender(self) -> str:
        return self.contact_name or self.contact_email


@dataclass(frozen=True, slots=True)
class ThreadFacts:
    """A thread's inbound messages that came after the user's last message in it (oldest
    first), and when that last message was (None: the user never wrote in it)."""

    thread_id: str
    last_outbound_at: datetime | None
    unanswered: tuple[MessageFacts, ...]


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    thread_id: str
    subject: str
    last_at: datetime
    # newest first
    interaction_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AttendeeFacts:
    contact_id: int
    name: str
    email: str
    response_status: str
    threads: tuple[ThreadSummary, ...] = ()
    # Unanswered messages of theirs in those threads (oldest first), with their text.
    unanswered: tuple[MessageFacts, ...] = ()

    @property
    def label(self) -> str:
        return self.name or self.email


@dataclass(frozen=True, slots=True)
class MeetingFacts:
    id: int
    subject: str
    starts_at: datetime
    duration_s: int | None
    attendees: tuple[AttendeeFacts, ...]


@dataclass(frozen=True, slots=True)
class TopContact:
    contact_id: int
    name: str
    email: str
    interactions: int


@dataclass(frozen=True, slots=True)
class DigestFacts:
    """A user's week (Monday 00:00 UTC to the next Monday) and what is open now."""

    week: str  # ISO week, "2025-W09"
    start: datetime
    end: datetime
    received: int
    sent: int
    meetings: int
    contacts: int
    new_contact_ids: tuple[int, ...]
    top: tuple[TopContact, ...]
    # kind -> ids of the user's open (new or seen) insights of that kind
    open_items: dict[str, list[int]] = field(default_factory=dict)
    interaction_ids: tuple[int, ...] = ()
    interaction_ids_truncated: bool = False
