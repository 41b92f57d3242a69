"""The normalized form of one Gmail message or Calendar event, and the error for unusable ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Keys of ours in raw payloads (they start with "_"; everything else is the provider's):
# - the calendar an event came from, and the listing's time zone (an all-day event starts at
#   that zone's midnight; UTC midnight without it), set by the Calendar sync;
# - the mark of a message deleted at Gmail, merged into its stored payload by the Gmail sync;
# - the mark of imported mail whose date nothing tells (its internalDate is a placeholder, so
#   the interaction's date is an estimate), set by the Takeout converter.
CALENDAR_ID_KEY = "_calendarId"
CALENDAR_TIME_ZONE_KEY = "_calendarTimeZone"
DELETED_KEY = "_deleted"
OCCURRED_AT_ESTIMATED_KEY = "_occurredAtEstimated"


@dataclass(frozen=True, slots=True)
class ParsedInteraction:
    source: str  # "gmail" | "calendar"
    source_id: str  # gmail message id; calendar: f"{calendar_id}/{event_id}"
    kind: str  # "email_inbound" | "email_outbound" | "meeting"
    occurred_at: datetime  # aware, UTC
    occurred_at_estimated: bool  # True when the resource itself did not say when it happened
    subject: str
    body_text: str
    thread_id: str
    direction: str  # "inbound" | "outbound" | "" (meetings)
    metadata: dict[str, Any]  # JSON-serialisable values only


class NormalizationError(Exception):
    """The payload cannot be turned into an interaction; the message says why."""
