"""Weekly digest per user: last week's activity and what is open now.

The week is the last complete ISO week before `now` (Monday 00:00 UTC to the next Monday; see
`digest_week`): e-mails received and sent, meetings (cancelled ones and duplicates not
counted), distinct contacts, contacts first seen that week, the `digest_top_contacts` (5) most
frequent, and the user's open insights by kind at the time of the run. No activity, no
digest. score = 50. Fingerprint: the ISO week ("2025-W09"); it expires `expiry_days` after
the week's end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from insights.conf import InsightsConfig
from insights.rules.base import Candidate, clip, fingerprint, iso
from insights.rules.facts import DigestFacts

KIND = "weekly_digest"
SCORE = 50.0
_OPEN_LABELS = {
    "awaiting_reply": "awaiting your reply",
    "going_cold": "going cold",
    "meeting_prep": "meeting(s) to prepare",
}


def digest_week(now: datetime) -> tuple[str, datetime, datetime]:
    """The last complete ISO week before `now`: (label, start, end), UTC."""
    today = now.astimezone(UTC).date()
    this_monday = today - timedelta(days=today.weekday())
    start_day = this_monday - timedelta(days=7)
    year, week, _ = start_day.isocalendar()
    start = datetime(start_day.year, start_day.month, start_day.day, tzinfo=UTC)
    return f"{year}-W{week:02d}", start, start + timedelta(days=7)


def weekly_digest(facts: DigestFacts, *, now: datetime, config: InsightsConfig) -> Candidate | None:
    if facts.received + facts.sent + facts.meetings == 0:
        return None
    top = [
        {
            "contact_id": t.contact_id,
            "name": t.name,
            "email": t.email,
            "interactions": t.interactions,
        }
        for t in facts.top
    ]
    open_counts = {kind: len(ids) for kind, ids in sorted(facts.open_items.items())}
    evidence = {
        "week": facts.week,
        "start": iso(facts.start),
        "end": iso(facts.end),
        "received": facts.received,
        "sent": facts.sent,
        "meetings": facts.meetings,
        "contacts": facts.contacts,
        "new_contacts": len(facts.new_contact_ids),
        "new_contact_ids": list(facts.new_contact_ids),
        "top_contacts": top,
        "open_items": open_counts,
        "open_insight_ids": {kind: ids for kind, ids in sorted(facts.open_items.items())},
        "interaction_ids": list(facts.interaction_ids),
        "interaction_ids_truncated": facts.interaction_ids_truncated,
    }
    parts = [
        f"{facts.received} e-mail(s) received, {facts.sent} sent, {facts.meetings} meeting(s) "
        f"with {facts.contacts} contact(s)"
        + (f", {len(facts.new_contact_ids)} of them new." if facts.new_contact_ids else ".")
    ]
    if top:
        names = ", ".join(f"{clip(t.name or t.email, 40)} ({t.interactions})" for t in facts.top)
        parts.append(f"Most in touch with {names}.")
    open_bits = [f"{n} {_OPEN_LABELS.get(k, k)}" for k, n in open_counts.items() if n]
    parts.append(f"Open now: {', '.join(open_bits)}." if open_bits else "Nothing open.")
    return Candidate(
        kind=KIND,
        fingerprint=fingerprint(KIND, "user", facts.week),
        contact_id=None,
        title=(
            f"Week {facts.week}: {facts.received} received, {facts.sent} sent, "
            f"{facts.meetings} meeting(s)"
        ),
        summary=" ".join(parts),
        evidence=evidence,
        score=SCORE,
        expires_at=facts.end + timedelta(days=config.expiry_days),
        basis={
            k: v for k, v in evidence.items() if k not in ("interaction_ids", "open_insight_ids")
        },
    )
