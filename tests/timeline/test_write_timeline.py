"""write_timeline: one event per (interaction, contact, type), bulk, idempotent, user-scoped."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts import merge_hooks
from contacts.models import Contact, InteractionDuplicate
from jobs.enqueue import enqueue
from jobs.models import Job
from jobs.runner import run_due_jobs
from tests.timeline.people import email, in_batch, many, meeting, person, take_part
from timeline.models import TimelineEvent
from timeline.services import (
    MERGE_HOOK,
    timeline_events_move,
    timeline_events_restore,
    timeline_events_write,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def inline_jobs(pipeline_config):
    pipeline_config(handoff="none")


def events(user):
    return {
        (e.interaction_id, e.contact_id, e.event_type): e
        for e in TimelineEvent.objects.filter(user=user)
    }


def run_stage(kind, user, batch_id, **payload) -> list[Job]:
    enqueue(kind, user=user, payload=payload, batch_id=batch_id, dedupe_key=f"{kind}:{batch_id}")
    run_due_jobs(until_empty=True)
    return list(Job.objects.filter(kind=kind, batch_id=batch_id).order_by("id"))


def test_item4_one_event_per_interaction_contact_and_type_with_titles_and_data(user):
    jane, joe = person(user, "jane@acme.example"), person(user, "joe@acme.example")
    received = email(user, subject="Quote")
    take_part(received, jane, "from")
    take_part(received, jane, "reply_to")  # two roles, one event
    take_part(received, joe, "cc")
    sent = email(user, outbound=True, subject="")
    take_part(sent, jane, "to")
    call = meeting(user, subject="Kick-off")
    take_part(call, jane, "organizer")
    take_part(call, jane, "attendee", "accepted")
    take_part(call, joe, "attendee", "declined")

    report = timeline_events_write(user_id=user.pk, interaction_ids=[received.pk, sent.pk, call.pk])

    assert (report.events, report.inserted, report.updated) == (5, 5, 0)
    found = events(user)
    assert set(found) == {
        (received.pk, jane.pk, "email_received"),
        (received.pk, joe.pk, "email_received"),
        (sent.pk, jane.pk, "email_sent"),
        (call.pk, jane.pk, "meeting"),
        (call.pk, joe.pk, "meeting"),
    }
    mail = found[(received.pk, jane.pk, "email_received")]
    assert mail.title == "Received: Quote"
    assert mail.occurred_at == received.occurred_at
    assert mail.data == {
        "subject": "Quote",
        "snippet": received.metadata["snippet"],
        "direction": "inbound",
        "thread_id": received.thread_id,
        "message_id": received.metadata["message_id"],
        "roles": ["from", "reply_to"],
    }
    assert found[(sent.pk, jane.pk, "email_sent")].title == "Sent: (no subject)"
    assert found[(sent.pk, jane.pk, "email_sent")].data["direction"] == "outbound"
    jane_meeting = found[(call.pk, jane.pk, "meeting")]
    assert jane_meeting.title == "Meeting: Kick-off"
    assert jane_meeting.data["response_status"] == "accepted"
    assert jane_meeting.data["organizer"] is True
    assert jane_meeting.data["meeting_link"] == "https://meet.example/abc"
    assert jane_meeting.data["duration_s"] == 1800
    assert found[(call.pk, joe.pk, "meeting")].data["response_status"] == "declined"
    assert found[(call.pk, joe.pk, "meeting")].data["organizer"] is False


def test_item4_a_cancelled_meeting_updates_its_event_instead_of_adding_one(user):
    jane = person(user, "jane@acme.example")
    call = meeting(user, subject="Review")
    take_part(call, jane, "attendee", "accepted")
    timeline_events_write(user_id=user.pk, interaction_ids=[call.pk])
    (before,) = TimelineEvent.objects.filter(user=user)

    call.metadata = {**call.metadata, "cancelled": True, "status": "cancelled"}
    call.save()
    report = timeline_events_write(user_id=user.pk, interaction_ids=[call.pk])

    (after,) = TimelineEvent.objects.filter(user=user)
    assert (report.inserted, report.updated) == (0, 1)
    assert after.pk == before.pk
    assert (after.event_type, after.title) == ("meeting_cancelled", "Cancelled: Review")
    assert after.data["status"] == "cancelled"
    again = timeline_events_write(user_id=user.pk, interaction_ids=[call.pk])
    assert (again.inserted, again.updated) == (0, 0)


def test_must_show_rerunning_write_timeline_inserts_0(user):
    contacts = [person(user, f"p{n}@acme.example") for n in range(4)]
    interactions = many(user, 30, contacts)
    batch = in_batch(interactions)

    (first,) = run_stage("write_timeline", user, batch)
    (second,) = [j for j in run_stage("write_timeline", user, batch) if j.pk != first.pk]

    assert first.status == second.status == "succeeded"
    assert (first.metrics["itemsFetched"], first.metrics["itemsInserted"]) == (30, 120)
    assert (second.metrics["itemsInserted"], second.metrics["itemsSkipped"]) == (0, 120)
    assert second.metrics["details"]["itemsUpdated"] == 0
    assert TimelineEvent.objects.filter(user=user).count() == 120


@pytest.mark.parametrize("stage", ["write_timeline", "update_rollups"])
def test_must_show_statements_per_chunk_are_the_same_for_10_and_500_interactions(
    user, other_user, stage
):
    def statements(owner, count: int) -> int:
        contacts = [person(owner, f"p{n}-{count}@acme.example") for n in range(4)]
        batch = in_batch(many(owner, count, contacts))
        enqueue(stage, user=owner, batch_id=batch, dedupe_key=f"{stage}:{batch}")
        with CaptureQueriesContext(connection) as captured:
            run_due_jobs(until_empty=True)
        (job,) = Job.objects.filter(kind=stage, batch_id=batch)
        assert job.status == "succeeded" and job.metrics["details"]["chunks"] == 1
        return len(captured.captured_queries)

    assert statements(user, 10) == statements(other_user, 500)


def test_must_show_same_message_id_from_takeout_and_api_gives_one_timeline_event(user):
    jane = person(user, "jane@acme.example")
    api = email(user, source_id="18c0ffee", message_id="<same@acme.example>")
    takeout = email(user, source_id="takeout-0001", message_id="<same@acme.example>")
    for copy in (api, takeout):
        take_part(copy, jane, "from")
    # the takeout copy was written before the duplicate was recognised
    timeline_events_write(user_id=user.pk, interaction_ids=[takeout.pk])
    InteractionDuplicate.objects.create(
        user=user, interaction=takeout, canonical=api, reason="message-id"
    )

    report = timeline_events_write(user_id=user.pk, interaction_ids=[api.pk, takeout.pk])

    assert (report.events, report.inserted, report.deleted) == (1, 1, 1)
    kept = TimelineEvent.objects.filter(user=user).values_list("interaction_id", flat=True)
    assert list(kept) == [api.pk]


def test_must_show_two_users_who_mail_the_same_person_have_separate_timelines(user, other_user):
    mine, theirs = person(user, "jane@acme.example"), person(other_user, "jane@acme.example")
    a, b = email(user), email(other_user)
    take_part(a, mine, "from")
    take_part(b, theirs, "from")

    # the other user's interaction named in this user's write is ignored
    report = timeline_events_write(user_id=user.pk, interaction_ids=[a.pk, b.pk])

    assert report.inserted == 1
    assert set(TimelineEvent.objects.values_list("user_id", "contact_id")) == {(user.pk, mine.pk)}
    timeline_events_write(user_id=other_user.pk, interaction_ids=[a.pk, b.pk])
    assert set(TimelineEvent.objects.values_list("user_id", "contact_id")) == {
        (user.pk, mine.pk),
        (other_user.pk, theirs.pk),
    }


def test_item7_the_merge_hook_moves_events_and_restores_exactly_what_it_moved(user):
    assert MERGE_HOOK in {hook.name for hook in merge_hooks.hooks()}
    source, target = person(user, "j.doe@acme.example"), person(user, "jane@acme.example")
    shared, only_source = email(user), email(user)
    for contact in (source, target):
        take_part(shared, contact, "to")
    take_part(only_source, source, "from")
    timeline_events_write(user_id=user.pk, interaction_ids=[shared.pk, only_source.pk])
    before = {e.pk: e.contact_id for e in TimelineEvent.objects.filter(user=user)}

    moved = timeline_events_move(user_id=user.pk, source_id=source.pk, target_id=target.pk)

    (moved_event,) = TimelineEvent.objects.filter(pk__in=moved)
    assert (moved_event.interaction_id, moved_event.contact_id) == (only_source.pk, target.pk)
    # the target already had an event for `shared`: the source's stays where it was
    assert TimelineEvent.objects.filter(contact=source, interaction=shared).exists()
    timeline_events_restore(user_id=user.pk, source_id=source.pk, target_id=target.pk, ids=moved)
    assert {e.pk: e.contact_id for e in TimelineEvent.objects.filter(user=user)} == before


def test_item4_past_its_deadline_it_continues_in_the_same_batch(user, pipeline_config, monkeypatch):
    monkeypatch.setattr("timeline.processors.write_timeline.CHUNK_SIZE", 10)
    pipeline_config(job_wall_clock_cap_s=0.0)
    jane = person(user, "jane@acme.example")
    batch = in_batch(many(user, 25, [jane]))

    jobs = run_stage("write_timeline", user, batch)

    assert [j.metrics["itemsFetched"] for j in jobs] == [10, 10, 5]
    assert [j.metrics["timedOut"] for j in jobs] == [True, True, False]
    assert TimelineEvent.objects.filter(user=user).count() == 25


def test_item4_a_contact_no_longer_taking_part_loses_its_event_a_merged_one_keeps_it(user):
    jane, joe = person(user, "jane@acme.example"), person(user, "joe@acme.example")
    call = meeting(user)
    take_part(call, jane, "attendee", "accepted")
    dropped = take_part(call, joe, "attendee", "needsAction")
    timeline_events_write(user_id=user.pk, interaction_ids=[call.pk])

    dropped.delete()  # joe was removed from the meeting
    report = timeline_events_write(user_id=user.pk, interaction_ids=[call.pk])

    assert (report.inserted, report.updated, report.deleted) == (0, 0, 1)
    assert list(TimelineEvent.objects.values_list("contact_id", flat=True)) == [jane.pk]

    # a merge leaves the source's conflicting event in place, and a rewrite keeps it there
    source = person(user, "j.doe@acme.example")
    take_part(call, source, "attendee", "accepted")
    timeline_events_write(user_id=user.pk, interaction_ids=[call.pk])
    assert timeline_events_move(user_id=user.pk, source_id=source.pk, target_id=jane.pk) == []
    source.participations.update(contact=jane)
    Contact.objects.filter(pk=source.pk).update(merged_into=jane)
    again = timeline_events_write(user_id=user.pk, interaction_ids=[call.pk])
    assert again.deleted == 0
    assert TimelineEvent.objects.filter(contact=source).count() == 1
