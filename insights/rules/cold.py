"""Going cold: a real relationship that has gone quiet for longer than usual.

A contact is going cold at `now` when all of these hold:

- a real relationship: at least `cold_min_interactions` interactions (6), of which at least
  `cold_min_each_way` (2) received and as many sent (received = e-mails received + meetings,
  sent = e-mails sent + meetings, as in the strength rule);
- a usual gap is known: the median gap between consecutive interactions
  (``typical_gap_days`` of the rollups) is above 0;
- silence_days = now - last interaction (2 decimals) is more than
  threshold_days = max(cold_gap_factor * typical_gap_days, cold_min_silence_days)
  (2 x the median gap, never under 14 days), and at most `cold_max_silence_days` (365: longer
  is long gone, not going cold);
- no meeting with the contact is booked yet (a meeting that has not started).

score = min(100, 50 * silence_days / threshold_days): 50 at the threshold, 100 at twice it.
Fingerprint: the contact and the date of the last interaction (the silence episode). A new
interaction ends the episode (its insight is resolved); a later silence is a new episode and a
new insight, even if the previous one was dismissed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from insights.conf import InsightsConfig
from insights.rules.base import Candidate, days_between, days_text, fingerprint, iso
from insights.rules.facts import ContactFacts

KIND = "going_cold"


def going_cold(contact: ContactFacts, *, now: datetime, config: InsightsConfig) -> Candidate | None:
    last, gap = contact.last_interaction_at, contact.typical_gap_days
    if last is None or gap is None or gap <= 0:
        return None
    received, sent = contact.received, contact.sent
    if (
        contact.interaction_count < config.cold_min_interactions
        or received < config.cold_min_each_way
        or sent < config.cold_min_each_way
    ):
        return None
    if contact.next_meeting_at is not None and contact.next_meeting_at > now:
        return None
    gap = round(gap, 2)
    silence = days_between(last, now)
    threshold = round(max(config.cold_gap_factor * gap, config.cold_min_silence_days), 2)
    if silence <= threshold or silence > config.cold_max_silence_days:
        return None
    overdue = round(silence / threshold, 4)
    score = round(min(100.0, 50.0 * overdue), 1)
    evidence = {
        "contact_id": contact.id,
        "last_interaction_at": iso(last),
        "last_inbound_at": iso(contact.last_inbound_at),
        "last_outbound_at": iso(contact.last_outbound_at),
        "silence_days": silence,
        "typical_gap_days": gap,
        "gap_factor": config.cold_gap_factor,
        "min_silence_days": config.cold_min_silence_days,
        "threshold_days": threshold,
        "overdue_ratio": overdue,
        "interaction_count": contact.interaction_count,
        "received": received,
        "sent": sent,
        "interaction_ids": list(contact.recent_interaction_ids),
    }
    summary = (
        f"No contact with {contact.label} for {days_text(silence)}; you usually hear from each "
        f"other every {gap:g} day(s) ({contact.interaction_count} interactions, "
        f"{received} received / {sent} sent). Time to reach out?"
    )
    return Candidate(
        kind=KIND,
        fingerprint=fingerprint(KIND, f"contact:{contact.id}", f"since:{iso(last)}"),
        contact_id=contact.id,
        title=f"Going cold: {contact.label}"[:300],
        summary=summary,
        evidence=evidence,
        score=score,
        expires_at=now + timedelta(days=config.expiry_days),
        basis={
            "contact": contact.id,
            "since": iso(last),
            "typical_gap_days": gap,
            "interaction_count": contact.interaction_count,
            "received": received,
            "sent": sent,
        },
    )
