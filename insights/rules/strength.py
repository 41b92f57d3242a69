"""Relationship strength per contact: recency, frequency and two-way balance.

From the contact's rollups, at `now`:

- recency   R = 0.5 ** (days_since_last / strength_half_life_days)        (1 today, 0.5 after
  one half-life, 30 days by default)
- frequency F = min(1, ln(1 + interactions_90d) / ln(1 + strength_frequency_target_90d))
  (the first interactions count most; 12 in 90 days, about one a week, is full frequency)
- two-way   W = min(received, sent) / max(received, sent), where received = e-mails received
  with the contact + meetings and sent = e-mails sent + meetings (0 when both are 0)
- score = 100 * (0.40 R + 0.35 F + 0.25 W), one decimal; band: strong >= 70, steady >= 40,
  weak >= 20, else fading.

Days are rounded to 2 decimals and R, F, W to 4 before the score is computed, so the evidence
reproduces the score exactly. Contacts with fewer than `strength_min_interactions`
interactions, or no dated one, get no insight. One insight per contact, with no period: it is
a standing measure, updated in place; a dismissed one stays dismissed.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from insights.conf import InsightsConfig
from insights.rules.base import Candidate, days_between, days_text, fingerprint, iso
from insights.rules.facts import ContactFacts

KIND = "relationship_strength"
WEIGHTS = {"recency": 0.40, "frequency": 0.35, "two_way": 0.25}
BANDS = ((70.0, "strong"), (40.0, "steady"), (20.0, "weak"), (0.0, "fading"))


def band_of(score: float) -> str:
    return next(name for floor, name in BANDS if score >= floor)


def relationship_strength(
    contact: ContactFacts, *, now: datetime, config: InsightsConfig
) -> Candidate | None:
    last = contact.last_interaction_at
    if last is None or contact.interaction_count < config.strength_min_interactions:
        return None
    days_since = max(0.0, days_between(last, now))
    recency = round(0.5 ** (days_since / config.strength_half_life_days), 4)
    frequency = round(
        min(
            1.0,
            math.log1p(contact.interactions_90d) / math.log1p(config.strength_frequency_target_90d),
        ),
        4,
    )
    received, sent = contact.received, contact.sent
    two_way = round(min(received, sent) / max(received, sent), 4) if max(received, sent) else 0.0
    score = round(
        100
        * (
            WEIGHTS["recency"] * recency
            + WEIGHTS["frequency"] * frequency
            + WEIGHTS["two_way"] * two_way
        ),
        1,
    )
    band = band_of(score)
    evidence = {
        "contact_id": contact.id,
        "last_interaction_at": iso(last),
        "days_since_last": days_since,
        "interactions_90d": contact.interactions_90d,
        "interaction_count": contact.interaction_count,
        "inbound_count": contact.inbound_count,
        "outbound_count": contact.outbound_count,
        "meeting_count": contact.meeting_count,
        "received": received,
        "sent": sent,
        "recency": recency,
        "frequency": frequency,
        "two_way": two_way,
        "weights": WEIGHTS,
        "half_life_days": config.strength_half_life_days,
        "frequency_target_90d": config.strength_frequency_target_90d,
        "band": band,
        "interaction_ids": list(contact.recent_interaction_ids),
    }
    summary = (
        f"{contact.label}: last in touch {days_text(days_since)} ago, "
        f"{contact.interactions_90d} interaction(s) in the last 90 days, "
        f"{received} received / {sent} sent (two-way {two_way:.2f}); strength {score:.1f}/100."
    )
    return Candidate(
        kind=KIND,
        fingerprint=fingerprint(KIND, f"contact:{contact.id}"),
        contact_id=contact.id,
        title=f"Relationship with {contact.label}: {band} ({score:.1f})"[:300],
        summary=summary,
        evidence=evidence,
        score=score,
        expires_at=now + timedelta(days=config.expiry_days),
        basis={
            "contact": contact.id,
            "band": band,
            "interaction_count": contact.interaction_count,
            "received": received,
            "sent": sent,
        },
    )
