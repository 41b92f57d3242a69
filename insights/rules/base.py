"""What a rule produces (a Candidate) and how it is identified (its fingerprint).

A rule is a pure function of plain facts (read by insights.selectors) and a moment `now`; it
returns Candidates and never touches the database, so each can be tested with crafted numbers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def stable_hash(value: Any) -> str:
    """sha256 hex of `value` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(kind: str, subject: str, period: str = "") -> str:
    """The identity of an insight: its kind, what it is about (``contact:42``,
    ``thread:abc``, ``meeting:17``, ``user``) and the period or episode it concerns (a week, a
    silence since a date, the latest message of a thread; "" for a standing one). Unique per
    user: a rerun that finds the same situation updates the row it made before."""
    return stable_hash(["insight/v1", kind, subject, period])


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(frozen=True, slots=True)
class Candidate:
    """An insight as a rule found it, before it is stored."""

    kind: str
    fingerprint: str
    contact_id: int | None
    title: str
    summary: str
    evidence: dict[str, Any]
    score: float
    expires_at: datetime
    # Questions still open: [{"text", "interaction_id"}].
    open_questions: list[dict[str, Any]] = field(default_factory=list)
    # The material content the LLM would phrase: its hash decides whether to ask again (numbers
    # that move every day, such as days of silence, stay out of it).
    basis: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return stable_hash(
            [
                self.kind,
                self.contact_id,
                self.title,
                self.summary,
                self.evidence,
                self.score,
                self.open_questions,
            ]
        )

    @property
    def basis_hash(self) -> str:
        return stable_hash([self.kind, self.basis])


DAY_S = 86_400.0


def days_between(earlier: datetime, later: datetime) -> float:
    """Days from `earlier` to `later`, rounded to 2 decimals (the precision evidence keeps, so
    a formula applied to the evidence gives the stored score)."""
    return round((later - earlier).total_seconds() / DAY_S, 2)


def days_text(days: float) -> str:
    """'today', '1 day', '12 days' (whole days, rounded down)."""
    whole = int(days)
    if whole <= 0:
        return "less than a day"
    return "1 day" if whole == 1 else f"{whole} days"


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
