"""The rules on the database: crafted interactions, rollups refreshed, insights generated and
stored by fingerprint; reruns, statuses, resolution, expiry, merges and isolation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contacts.models import InteractionDuplicate
from contacts.services.merge import contact_merge, contact_unmerge
from insights.models import Insight, InsightStatus
from insights.rules.base import fingerprint
from insights.selectors import insight_list
from insights.services import InsightsReport, insight_set_status, insights_generate
from tests.insights.helpers import DAY, NOW, exchange, mail, meeting_with, person, refresh

pytestmark = pytest.mark.django_db


def generate(user, now=NOW, **kwargs) -> InsightsReport:
    report = InsightsReport()
    assert insights_generate(user_id=user.pk, now=now, report=report, **kwargs) is None
    return report


def only(user, kind: str) -> Insight:
    (insight,) = Insight.objects.filter(user=user, kind=kind)
    return insight


@pytest.fixture
def jane(user):
    """Six e-mails ten days apart, received and sent in turn, the last 50 days ago."""
    contact = person(user, "jane@acme.example", "Jane Doe")
    interactions = exchange(user, contact, days_ago=[100, 90, 80, 70, 60, 50])
    refresh(user, contact)
    contact.interactions = interactions
    return contact


def test_strength_and_going_cold_from_the_rollups_with_their_numbers(user, jane):
    report = generate(user)

    strength = only(user, "relationship_strength")
    assert strength.contact_id == jane.pk
    e = strength.evidence
    assert (e["days_since_last"], e["interactions_90d"], e["received"], e["sent"]) == (
        50.0,
        4,
        3,
        3,
    )
    assert (e["recency"], e["frequency"], e["two_way"]) == (0.315, 0.6275, 1.0)
    assert strength.score == 59.6
    newest = [i.pk for i in reversed(jane.interactions)][:5]
    assert e["interaction_ids"] == newest

    cold = only(user, "going_cold")
    assert cold.contact_id == jane.pk
    e = cold.evidence
    assert (e["silence_days"], e["typical_gap_days"], e["threshold_days"]) == (50.0, 10.0, 20.0)
    assert cold.score == 100.0  # 50 * 50 / 20, capped
    assert cold.fingerprint == fingerprint(
        "going_cold", f"contact:{jane.pk}", f"since:{(NOW - 50 * DAY).isoformat()}"
    )
    assert cold.status == "new" and cold.summary_source == "heuristic"
    assert cold.llm_fallback_reason == "not_configured"  # a kind the LLM phrases, none set
    assert strength.llm_fallback_reason is None  # not phrased by the LLM by default
    assert (report.inserted, report.updated, report.unchanged) == (2, 0, 0)


def test_a_rerun_updates_the_same_rows_and_keeps_their_status(user, jane):
    generate(user)
    before = {i.kind: (i.pk, i.fingerprint) for i in Insight.objects.filter(user=user)}
    insight_set_status(user=user, insight_ids=[before["going_cold"][0]], status="dismissed")
    insight_set_status(user=user, insight_ids=[before["relationship_strength"][0]], status="seen")

    report = generate(user)

    after = {i.kind: (i.pk, i.fingerprint) for i in Insight.objects.filter(user=user)}
    assert after == before
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 2)
    assert only(user, "going_cold").status == "dismissed"
    assert only(user, "relationship_strength").status == "seen"

    # a day later the numbers move: same rows, updated, statuses kept
    report = generate(user, now=NOW + DAY)
    assert {i.kind: (i.pk, i.fingerprint) for i in Insight.objects.filter(user=user)} == before
    assert report.updated == 2
    cold = only(user, "going_cold")
    assert (cold.status, cold.evidence["silence_days"]) == ("dismissed", 51.0)


def test_a_new_interaction_resolves_going_cold_and_a_later_silence_is_a_new_insight(user, jane):
    generate(user)
    first = only(user, "going_cold")

    mail(user, jane, at=NOW - DAY, body="Back from leave, all good.")
    refresh(user, jane)
    report = generate(user)
    assert not Insight.objects.filter(user=user, kind="going_cold").exists()
    assert report.resolved == 1

    # silent again, long enough: a new episode, a new row
    later = NOW + 60 * DAY
    refresh(user, jane, now=later)
    generate(user, now=later)
    again = only(user, "going_cold")
    assert again.pk != first.pk and again.fingerprint != first.fingerprint
    assert again.status == "new"


def test_a_dismissed_insight_stays_until_it_expires_when_its_situation_is_over(user, jane):
    generate(user)
    cold = only(user, "going_cold")
    insight_set_status(user=user, insight_ids=[cold.pk], status="dismissed")

    mail(user, jane, at=NOW - DAY, body="Back from leave.")
    refresh(user, jane)
    generate(user)
    kept = only(user, "going_cold")
    assert (kept.pk, kept.status) == (cold.pk, "dismissed")
    assert kept.expires_at == NOW + timedelta(days=14)

    report = generate(user, now=NOW + timedelta(days=14))
    assert not Insight.objects.filter(pk=cold.pk).exists()
    assert report.expired >= 1


# --- awaiting your reply ---------------------------------------------------------------------


def test_an_unanswered_question_is_awaiting_a_reply_until_you_write_in_the_thread(user):
    jane = person(user, "jane@acme.example", "Jane Doe")
    asked = mail(
        user,
        jane,
        at=NOW - 5 * DAY,
        thread="th-1",
        subject="Contract",
        body="Could you send the signed contract?\n\nOn Mon, Ada wrote:\n> Here it is. Ok?",
    )
    early = mail(user, jane, at=NOW - 8 * DAY, outbound=True, thread="th-1", subject="Contract")

    generate(user)

    insight = only(user, "awaiting_reply")
    assert insight.contact_id == jane.pk
    e = insight.evidence
    assert (e["thread_id"], e["days_waiting"], e["unanswered_ids"]) == ("th-1", 5.0, [asked.pk])
    assert e["last_outbound_at"] == early.occurred_at.isoformat()
    assert e["asking"][0]["questions"] == ["Could you send the signed contract?"]
    assert insight.open_questions == [
        {"text": "Could you send the signed contract?", "interaction_id": asked.pk}
    ]
    assert insight.score == 58.3  # 50 + 50 * 5 days / 30
    assert insight.summary == (
        "Jane Doe asked 1 question in “Contract” 5 days ago, and you have not replied: "
        "“Could you send the signed contract?”"
    )

    mail(user, jane, at=NOW - DAY, outbound=True, thread="th-1", subject="Re: Contract")
    report = generate(user)
    assert not Insight.objects.filter(user=user, kind="awaiting_reply").exists()
    assert report.resolved == 1


def test_a_reminder_reopens_a_dismissed_awaiting_reply(user):
    jane = person(user, "jane@acme.example", "Jane Doe")
    mail(user, jane, at=NOW - 6 * DAY, thread="th-2", body="Can you review the draft?")
    generate(user)
    first = only(user, "awaiting_reply")
    insight_set_status(user=user, insight_ids=[first.pk], status="dismissed")
    generate(user)
    assert only(user, "awaiting_reply").status == "dismissed"

    reminder = mail(user, jane, at=NOW - DAY, thread="th-2", body="Any news on this?")
    generate(user)
    rows = {i.status: i for i in Insight.objects.filter(user=user, kind="awaiting_reply")}
    assert set(rows) == {"dismissed", "new"}  # the old decision is kept until it expires
    assert rows["new"].evidence["unanswered_ids"][-1] == reminder.pk
    assert rows["new"].evidence["days_waiting"] == 6.0


def test_not_awaiting_for_estimated_duplicate_or_other_users_mail(user, other_user):
    jane = person(user, "jane@acme.example", "Jane Doe")
    mail(user, jane, at=NOW - 5 * DAY, thread="th-e", body="Can you call?", estimated=True)
    original = mail(user, jane, at=NOW - 5 * DAY, thread="th-d", body="Can you call me?")
    copy = mail(user, jane, at=NOW - 5 * DAY, thread="th-d2", body="Can you call me?")
    InteractionDuplicate.objects.create(user=user, interaction=copy, canonical=original)
    # the other user's reply in a thread of the same id is not this user's reply
    bob_contact = person(other_user, "jane@acme.example", "Jane")
    mail(other_user, bob_contact, at=NOW - DAY, outbound=True, thread="th-d")

    generate(user)

    (insight,) = Insight.objects.filter(user=user, kind="awaiting_reply")
    assert insight.evidence["unanswered_ids"] == [original.pk]
    assert not Insight.objects.filter(user=other_user).exists()


# --- meeting prep ----------------------------------------------------------------------------


def test_meeting_prep_with_the_attendees_threads_and_open_questions(user):
    jane = person(user, "jane@acme.example", "Jane Doe")
    bob = person(user, "bob@acme.example", "Bob")
    sent = mail(user, jane, at=NOW - 4 * DAY, outbound=True, thread="b-1", subject="Budget")
    question = mail(
        user,
        jane,
        at=NOW - 3 * DAY,
        thread="b-1",
        subject="Re: Budget",
        body="Can we move the budget review to May?",
    )
    answered = mail(user, bob, at=NOW - 9 * DAY, thread="b-2", subject="Venue", body="Which room?")
    mail(user, bob, at=NOW - 8 * DAY, outbound=True, thread="b-2", subject="Re: Venue")
    soon = meeting_with(user, [jane, bob], at=NOW + timedelta(hours=20), subject="Quarterly")
    meeting_with(user, [jane], at=NOW + timedelta(hours=60), subject="Too far")
    meeting_with(user, [jane], at=NOW + timedelta(hours=5), subject="Off", cancelled=True)
    meeting_with(
        user, [bob], at=NOW + timedelta(hours=6), subject="Declined", own_response="declined"
    )

    generate(user)

    prep = only(user, "meeting_prep")
    e = prep.evidence
    assert (e["meeting_id"], e["hours_until"], e["subject"]) == (soon.pk, 20.0, "Quarterly")
    attendees = {a["contact_id"]: a for a in e["attendees"]}
    assert set(attendees) == {jane.pk, bob.pk}
    assert attendees[jane.pk]["threads"] == [
        {
            "thread_id": "b-1",
            "subject": "Re: Budget",
            "last_at": question.occurred_at.isoformat(),
            "interaction_ids": [question.pk, sent.pk],
        }
    ]
    assert attendees[jane.pk]["open_questions"] == [
        {"text": "Can we move the budget review to May?", "interaction_id": question.pk}
    ]
    assert attendees[bob.pk]["open_questions"] == []  # Bob's question was answered
    assert answered.pk in e["interaction_ids"]
    assert prep.contact_id is None  # two attendees
    assert prep.score == round(100 - 50 * 20 / 48, 1)
    assert prep.expires_at == soon.occurred_at + timedelta(days=14)


# --- weekly digest ---------------------------------------------------------------------------


def test_weekly_digest_counts_last_week(user):
    jane = person(user, "jane@acme.example", "Jane Doe")
    bob = person(user, "bob@acme.example", "Bob")
    monday = NOW - 9 * DAY  # Monday 24 Feb 2025 12:00, in 2025-W09
    in_week = [
        mail(user, jane, at=monday),
        mail(user, jane, at=monday + DAY, outbound=True),
        mail(user, jane, at=monday + 2 * DAY),
        mail(user, bob, at=monday + 3 * DAY),
        meeting_with(user, [jane, bob], at=monday + 4 * DAY),
    ]
    meeting_with(user, [bob], at=monday + 5 * DAY, cancelled=True)
    mail(user, jane, at=NOW - DAY)  # this week: not counted
    refresh(user, jane, bob)

    generate(user)

    digest = only(user, "weekly_digest")
    e = digest.evidence
    assert e["week"] == "2025-W09"
    assert (e["received"], e["sent"], e["meetings"], e["contacts"]) == (3, 1, 1, 2)
    assert e["new_contacts"] == 2
    assert e["top_contacts"] == [
        {
            "contact_id": jane.pk,
            "name": "Jane Doe",
            "email": "jane@acme.example",
            "interactions": 4,
        },
        {"contact_id": bob.pk, "name": "Bob", "email": "bob@acme.example", "interactions": 2},
    ]
    assert sorted(e["interaction_ids"]) == sorted(i.pk for i in in_week)
    assert digest.fingerprint == fingerprint("weekly_digest", "user", "2025-W09")


# --- merges ----------------------------------------------------------------------------------


def test_a_merge_moves_the_insights_with_the_person_and_an_unmerge_brings_them_back(user, jane):
    other = person(user, "j.doe@acme.example", "J. Doe")
    exchange(user, other, days_ago=[45, 44, 43])
    refresh(user, other)
    generate(user)
    strength, cold = (
        Insight.objects.get(user=user, contact=jane, kind=k)
        for k in ("relationship_strength", "going_cold")
    )
    insight_set_status(user=user, insight_ids=[cold.pk], status="dismissed")

    merge = contact_merge(user=user, source=jane, target=other)
    assert sorted(merge.moved["insights"]) == sorted([strength.pk, cold.pk])
    assert set(
        Insight.objects.filter(pk__in=[strength.pk, cold.pk]).values_list("contact_id", flat=True)
    ) == {other.pk}

    # while merged, the target's run resolves what was the source's: the open strength row
    # goes, the dismissed one stays with the person
    generate(user)
    assert not Insight.objects.filter(pk=strength.pk).exists()
    assert Insight.objects.get(pk=cold.pk).contact_id == other.pk

    contact_unmerge(merge=merge)
    assert Insight.objects.get(pk=cold.pk).contact_id == jane.pk
    generate(user)
    back = Insight.objects.get(pk=cold.pk)
    assert (back.contact_id, back.status) == (jane.pk, "dismissed")
    again = Insight.objects.get(user=user, kind="relationship_strength", contact=jane)
    assert again.fingerprint == strength.fingerprint and again.status == "new"


# --- isolation -------------------------------------------------------------------------------


def test_a_users_insights_are_computed_listed_and_changed_only_for_them(user, other_user, jane):
    theirs = person(other_user, "jane@acme.example", "Jane (Bob's)")
    exchange(other_user, theirs, days_ago=[30, 20, 10])
    refresh(other_user, theirs)

    generate(user)
    generate(other_user)

    assert {i.contact.user_id for i in Insight.objects.filter(user=user)} == {user.pk}
    assert {i.contact.user_id for i in Insight.objects.filter(user=other_user)} == {other_user.pk}
    listed = list(insight_list(user=user, status="all"))
    assert listed and all(i.user_id == user.pk for i in listed)
    bobs = list(Insight.objects.filter(user=other_user).values_list("pk", flat=True))
    assert insight_set_status(user=user, insight_ids=bobs, status="dismissed") == 0
    assert not Insight.objects.filter(user=other_user, status="dismissed").exists()


def test_insight_list_filters_by_kind_and_status(user, jane):
    generate(user)
    cold = only(user, "going_cold")
    insight_set_status(user=user, insight_ids=[cold.pk], status=InsightStatus.DONE)

    assert [i.kind for i in insight_list(user=user)] == ["relationship_strength"]
    assert [i.pk for i in insight_list(user=user, status="done")] == [cold.pk]
    assert [i.pk for i in insight_list(user=user, kinds=["going_cold"], status="all")] == [cold.pk]
    with pytest.raises(ValueError, match="unknown kind 'cold'"):
        insight_list(user=user, kinds=["cold"])
