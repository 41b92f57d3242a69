"""The rules as pure functions: crafted facts in, candidates with their exact evidence out."""

from __future__ import annotations

import math
from datetime import timedelta

from insights.rules.awaiting_reply import awaiting_reply
from insights.rules.base import fingerprint
from insights.rules.cold import going_cold
from insights.rules.digest import digest_week, weekly_digest
from insights.rules.facts import (
    AttendeeFacts,
    ContactFacts,
    DigestFacts,
    MeetingFacts,
    MessageFacts,
    ThreadFacts,
    ThreadSummary,
    TopContact,
)
from insights.rules.meeting_prep import meeting_prep
from insights.rules.strength import relationship_strength
from tests.insights.helpers import DAY, NOW, config

DEFAULTS = config()


def facts(**overrides) -> ContactFacts:
    values = {
        "id": 7,
        "name": "Jane Doe",
        "email": "jane@acme.example",
        "last_interaction_at": NOW - 10 * DAY,
        "last_inbound_at": NOW - 10 * DAY,
        "last_outbound_at": NOW - 12 * DAY,
        "interaction_count": 20,
        "interactions_90d": 8,
        "inbound_count": 6,
        "outbound_count": 3,
        "meeting_count": 1,
        "typical_gap_days": 4.0,
        "recent_interaction_ids": (31, 30, 29),
    }
    values.update(overrides)
    return ContactFacts(**values)


# --- relationship strength -------------------------------------------------------------------


def test_strength_has_its_three_components_and_the_weighted_score_in_its_evidence():
    candidate = relationship_strength(facts(), now=NOW, config=DEFAULTS)

    assert candidate is not None
    e = candidate.evidence
    # recency 0.5 ** (10 / 30); frequency ln(1 + 8) / ln(1 + 12); two-way min(7, 4) / max(7, 4)
    assert (e["days_since_last"], e["recency"], e["frequency"], e["two_way"]) == (
        10.0,
        0.7937,
        0.8566,
        0.5714,
    )
    assert (e["received"], e["sent"]) == (7, 4)  # e-mails plus the meeting, each way
    assert e["weights"] == {"recency": 0.4, "frequency": 0.35, "two_way": 0.25}
    assert candidate.score == 76.0 == round(100 * (0.4 * 0.7937 + 0.35 * 0.8566 + 0.25 * 0.5714), 1)
    assert e["band"] == "strong"
    assert e["interaction_ids"] == [31, 30, 29]
    assert candidate.title == "Relationship with Jane Doe: strong (76.0)"
    assert candidate.fingerprint == fingerprint("relationship_strength", "contact:7")
    assert candidate.expires_at == NOW + timedelta(days=14)


def test_strength_frequency_is_capped_and_one_way_contact_has_no_balance():
    candidate = relationship_strength(
        facts(
            interactions_90d=40,
            inbound_count=9,
            outbound_count=0,
            meeting_count=0,
            last_interaction_at=NOW,
        ),
        now=NOW,
        config=DEFAULTS,
    )

    assert candidate is not None
    assert (candidate.evidence["recency"], candidate.evidence["frequency"]) == (1.0, 1.0)
    assert candidate.evidence["two_way"] == 0.0
    assert candidate.score == 75.0


def test_strength_needs_a_few_dated_interactions():
    assert relationship_strength(facts(interaction_count=2), now=NOW, config=DEFAULTS) is None
    assert relationship_strength(facts(last_interaction_at=None), now=NOW, config=DEFAULTS) is None


def test_strength_half_life_is_configurable():
    candidate = relationship_strength(facts(), now=NOW, config=config(strength_half_life_days=10))
    assert candidate is not None and candidate.evidence["recency"] == 0.5


# --- going cold ------------------------------------------------------------------------------


def test_going_cold_after_twice_the_usual_gap_of_a_two_way_relationship():
    # median gap 10 days -> threshold 20 days; silent for 25
    candidate = going_cold(
        facts(typical_gap_days=10.0, last_interaction_at=NOW - 25 * DAY), now=NOW, config=DEFAULTS
    )

    assert candidate is not None
    e = candidate.evidence
    assert (e["silence_days"], e["typical_gap_days"], e["threshold_days"]) == (25.0, 10.0, 20.0)
    assert (e["gap_factor"], e["overdue_ratio"], e["received"], e["sent"]) == (2.0, 1.25, 7, 4)
    assert candidate.score == 62.5  # 50 * 25 / 20
    assert candidate.fingerprint == fingerprint(
        "going_cold", "contact:7", f"since:{(NOW - 25 * DAY).isoformat()}"
    )


def test_not_cold_within_the_threshold_or_under_the_floor():
    assert (
        going_cold(
            facts(typical_gap_days=10.0, last_interaction_at=NOW - 20 * DAY),
            now=NOW,
            config=DEFAULTS,
        )
        is None
    )  # exactly twice the gap is not more than twice
    # gap 2 days: twice is 4, but never sooner than 14 days
    assert (
        going_cold(
            facts(typical_gap_days=2.0, last_interaction_at=NOW - 10 * DAY),
            now=NOW,
            config=DEFAULTS,
        )
        is None
    )
    assert (
        going_cold(
            facts(typical_gap_days=2.0, last_interaction_at=NOW - 15 * DAY),
            now=NOW,
            config=DEFAULTS,
        )
        is not None
    )


def test_not_cold_without_a_real_relationship_both_ways():
    silent = {"typical_gap_days": 5.0, "last_interaction_at": NOW - 60 * DAY}
    assert going_cold(facts(interaction_count=5, **silent), now=NOW, config=DEFAULTS) is None
    assert (
        going_cold(facts(outbound_count=0, meeting_count=1, **silent), now=NOW, config=DEFAULTS)
        is None
    )  # sent = 1 < 2
    assert (
        going_cold(
            facts(outbound_count=0, meeting_count=1, **silent),
            now=NOW,
            config=config(cold_min_each_way=1),
        )
        is not None
    )


def test_not_cold_when_long_gone_or_a_meeting_is_booked():
    assert (
        going_cold(
            facts(typical_gap_days=5.0, last_interaction_at=NOW - 400 * DAY),
            now=NOW,
            config=DEFAULTS,
        )
        is None
    )
    assert (
        going_cold(
            facts(
                typical_gap_days=5.0, last_interaction_at=NOW - 60 * DAY, next_meeting_at=NOW + DAY
            ),
            now=NOW,
            config=DEFAULTS,
        )
        is None
    )


def test_cold_factor_is_configurable():
    contact = facts(typical_gap_days=10.0, last_interaction_at=NOW - 25 * DAY)
    assert going_cold(contact, now=NOW, config=config(cold_gap_factor=3)) is None


# --- awaiting reply --------------------------------------------------------------------------


def message(pk: int, days_ago: float, body: str, subject: str = "Proposal") -> MessageFacts:
    return MessageFacts(
        id=pk,
        occurred_at=NOW - days_ago * DAY,
        subject=subject,
        body=body,
        contact_id=7,
        contact_name="Jane Doe",
        contact_email="jane@acme.example",
    )


def test_awaiting_reply_counts_from_the_oldest_due_question():
    thread = ThreadFacts(
        thread_id="t-1",
        last_outbound_at=NOW - 9 * DAY,
        unanswered=(
            message(11, 5, "Could you send the signed copy?\n\nOn Mon, Ada wrote:\n> Is it ok?"),
            message(12, 4, "Thanks, see you then."),
            message(13, 1, "Also, which invoice address should we use?"),
        ),
    )

    candidate = awaiting_reply(thread, now=NOW, config=DEFAULTS)

    assert candidate is not None
    e = candidate.evidence
    assert (e["days_waiting"], e["threshold_days"], e["unanswered_ids"]) == (5.0, 3.0, [11, 12, 13])
    assert e["asked_at"] == (NOW - 5 * DAY).isoformat()
    assert e["last_outbound_at"] == (NOW - 9 * DAY).isoformat()
    assert e["asking"] == [
        {
            "interaction_id": 11,
            "occurred_at": (NOW - 5 * DAY).isoformat(),
            "questions": ["Could you send the signed copy?"],
        },
        {
            "interaction_id": 13,
            "occurred_at": (NOW - 1 * DAY).isoformat(),
            "questions": ["Also, which invoice address should we use?"],
        },
    ]  # the quoted "Is it ok?" is not theirs
    assert candidate.open_questions == [
        {"text": "Could you send the signed copy?", "interaction_id": 11},
        {"text": "Also, which invoice address should we use?", "interaction_id": 13},
    ]
    assert candidate.score == 58.3  # 50 + 50 * 5 / 30
    assert candidate.contact_id == 7
    # the thread and its latest message: a reminder from them is a new situation
    assert candidate.fingerprint == fingerprint("awaiting_reply", "thread:t-1", "latest:13")


def test_no_insight_before_n_days_or_without_a_question():
    recent = ThreadFacts("t-2", None, (message(21, 2, "Can you call me?"),))
    assert awaiting_reply(recent, now=NOW, config=DEFAULTS) is None
    assert awaiting_reply(recent, now=NOW, config=config(awaiting_reply_days=1)) is not None
    statement = ThreadFacts("t-3", None, (message(31, 6, "Here is the report. Best, Jane"),))
    assert awaiting_reply(statement, now=NOW, config=DEFAULTS) is None


# --- meeting prep ----------------------------------------------------------------------------


def test_meeting_prep_lists_threads_and_open_questions_per_attendee():
    jane = AttendeeFacts(
        contact_id=7,
        name="Jane Doe",
        email="jane@acme.example",
        response_status="accepted",
        threads=(ThreadSummary("t-9", "Budget", NOW - 2 * DAY, (91, 90)),),
        unanswered=(message(91, 2, "Can we move the budget review to May?", "Budget"),),
    )
    bob = AttendeeFacts(8, "Bob", "bob@acme.example", "declined")
    meeting = MeetingFacts(
        id=50,
        subject="Quarterly review",
        starts_at=NOW + timedelta(hours=24),
        duration_s=3600,
        attendees=(jane, bob),
    )

    candidate = meeting_prep(meeting, now=NOW, config=DEFAULTS)

    assert candidate is not None
    e = candidate.evidence
    assert (e["meeting_id"], e["hours_until"], e["window_hours"]) == (50, 24.0, 48.0)
    assert [a["contact_id"] for a in e["attendees"]] == [7]  # Bob declined
    assert e["attendees"][0]["threads"] == [
        {
            "thread_id": "t-9",
            "subject": "Budget",
            "last_at": (NOW - 2 * DAY).isoformat(),
            "interaction_ids": [91, 90],
        }
    ]
    assert e["attendees"][0]["open_questions"] == [
        {"text": "Can we move the budget review to May?", "interaction_id": 91}
    ]
    assert e["interaction_ids"] == [50, 91, 90]
    assert candidate.score == 75.0  # 100 - 50 * 24 / 48
    assert candidate.contact_id == 7  # one attendee left
    assert candidate.expires_at == NOW + timedelta(hours=24) + timedelta(days=14)
    assert candidate.fingerprint == fingerprint(
        "meeting_prep", "meeting:50", f"start:{(NOW + timedelta(hours=24)).isoformat()}"
    )


def test_no_prep_outside_the_window_or_without_attendees():
    jane = AttendeeFacts(7, "Jane", "jane@acme.example", "accepted")
    later = MeetingFacts(1, "Later", NOW + timedelta(hours=49), None, (jane,))
    alone = MeetingFacts(2, "Focus", NOW + timedelta(hours=2), None, ())
    assert meeting_prep(later, now=NOW, config=DEFAULTS) is None
    assert meeting_prep(alone, now=NOW, config=DEFAULTS) is None


# --- weekly digest ---------------------------------------------------------------------------


def test_digest_week_is_the_last_complete_iso_week():
    week, start, end = digest_week(NOW)  # Wednesday 5 March 2025
    assert week == "2025-W09"
    assert (start.isoformat(), end.isoformat()) == (
        "2025-02-24T00:00:00+00:00",
        "2025-03-03T00:00:00+00:00",
    )
    assert digest_week(start)[0] == "2025-W08"


def test_digest_counts_top_contacts_and_open_items():
    week, start, end = digest_week(NOW)
    digest = DigestFacts(
        week=week,
        start=start,
        end=end,
        received=4,
        sent=3,
        meetings=1,
        contacts=2,
        new_contact_ids=(8,),
        top=(
            TopContact(7, "Jane Doe", "jane@acme.example", 5),
            TopContact(8, "", "bob@x.example", 2),
        ),
        open_items={"awaiting_reply": [101, 102], "going_cold": [], "meeting_prep": [103]},
        interaction_ids=(1, 2, 3, 4, 5, 6, 7, 8),
    )

    candidate = weekly_digest(digest, now=NOW, config=DEFAULTS)

    assert candidate is not None
    assert candidate.title == "Week 2025-W09: 4 received, 3 sent, 1 meeting(s)"
    assert candidate.evidence["open_items"] == {
        "awaiting_reply": 2,
        "going_cold": 0,
        "meeting_prep": 1,
    }
    assert candidate.evidence["top_contacts"][0] == {
        "contact_id": 7,
        "name": "Jane Doe",
        "email": "jane@acme.example",
        "interactions": 5,
    }
    assert "Most in touch with Jane Doe (5), bob@x.example (2)." in candidate.summary
    assert "Open now: 2 awaiting your reply, 1 meeting(s) to prepare." in candidate.summary
    assert candidate.fingerprint == fingerprint("weekly_digest", "user", "2025-W09")
    assert candidate.expires_at == end + timedelta(days=14)


def test_no_digest_for_a_quiet_week():
    week, start, end = digest_week(NOW)
    quiet = DigestFacts(week, start, end, 0, 0, 0, 0, (), ())
    assert weekly_digest(quiet, now=NOW, config=DEFAULTS) is None


def test_scores_stay_between_0_and_100():
    very_cold = going_cold(
        facts(typical_gap_days=5.0, last_interaction_at=NOW - 300 * DAY), now=NOW, config=DEFAULTS
    )
    assert very_cold is not None and very_cold.score == 100.0
    assert math.isclose(
        relationship_strength(
            facts(last_interaction_at=NOW - 3000 * DAY), now=NOW, config=DEFAULTS
        ).score,
        round(100 * (0.35 * 0.8566 + 0.25 * 0.5714), 1),
    )
