"""The normalized form of one Gmail message or Calendar event, and the error for unusable ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
