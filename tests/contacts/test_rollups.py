"""update_rollups / contact_rollups_refresh: per-contact figures, set-based, idempotent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django_q.models import Schedule

from contacts.models import Contact, InteractionDuplicate, InteractionParticipant
from contacts.rollups import NIGHTLY_SCHEDULE, contact_rollups_refresh, rollups_nightly
from jobs.enqueue import enqueue
from jobs.models import Job
from jobs.runner import run_due_jobs
from tests.timeline.people import NOW, email, in_batch, many, meeting, person, take_part

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def inline_jobs(pipeline_config):
    pipeline_config(handoff="none")


def days(n: float):
    return NOW - timedelta(days=n)


def test_item5_rollups_per_contact(user):
    jane, idle = person(user, "jane@acme.example"), person(user, "idle@acme.example")
    old = email(user, at=days(400), subject="Long ago")
    take_part(old, jane, "from")
    sent = email(user, outbound=True, at=days(100), subject="Proposal")
    take_part(sent, jane, "to")
    take_part(sent, jane, "cc")  # two roles: one interaction
    call = meeting(user, at=days(60), subject="Call")
    take_part(call, jane, "attendee", "accepted")
    latest = email(user, at=days(10), subject="Re: Proposal")
    take_part(latest, jane, "from")
    # neither counts: a cancelled meeting, and a meeting that has not happened yet
    take_part(meeting(user, at=days(5), cancelled=True), jane, "attendee")
    take_part(meeting(user, at=NOW + timedelta(days=3)), jane, "attendee")

    changed = contact_rollups_refresh(user_id=user.pk, contact_ids=[jane.pk, idle.pk], now=NOW)

    jane.refresh_from_db()
    assert changed == 1  # idle had nothing and still has nothing
    assert (jane.first_interaction_at, jane.last_interaction_at) == (old.occurred_at, days(10))
    assert (jane.last_inbound_at, jane.last_outbound_at) == (days(10), days(100))
    assert jane.interaction_count == 4
    assert (jane.interactions_30d, jane.interactions_90d, jane.interactions_365d) == (1, 2, 3)
    assert (jane.inbound_count, jane.outbound_count, jane.meeting_count) == (2, 1, 1)
    # gaps 300, 40, 50 days: median 50
    assert jane.typical_gap_days == pytest.approx(50.0)
    assert [r["subject"] for r in jane.recent_interactions] == [
        "Re: Proposal",
        "Call",
        "Proposal",
        "Long ago",
    ]
    assert jane.recent_interactions[0] == {
        "id": latest.pk,
        "kind": "email_inbound",
        "occurred_at": "2025-02-19T12:00:00Z",
        "subject": "Re: Proposal",
    }
    assert jane.rollups_updated_at == NOW
    idle.refresh_from_db()
    assert (idle.interaction_count, idle.typical_gap_days) == (0, None)
    assert idle.recent_interactions == []


def test_item5_counts_decay_with_time_on_refresh(user):
    jane = person(user, "jane@acme.example")
    take_part(email(user, at=days(20)), jane, "from")
    contact_rollups_refresh(user_id=user.pk, contact_ids=[jane.pk], now=NOW)
    assert Contact.objects.get(pk=jane.pk).interactions_30d == 1

    later = NOW + timedelta(days=15)
    assert contact_rollups_refresh(user_id=user.pk, contact_ids=[jane.pk], now=later) == 1

    jane.refresh_from_db()
    assert (jane.interactions_30d, jane.interactions_90d, jane.interaction_count) == (0, 1, 1)


def test_must_show_rerunning_update_rollups_inserts_0(user):
    contacts = [person(user, f"p{n}@acme.example") for n in range(4)]
    batch = in_batch(many(user, 20, contacts))

    for _ in range(2):
        enqueue("update_rollups", user=user, batch_id=batch, dedupe_key=f"r:{batch}")
        run_due_jobs(until_empty=True)

    first, second = Job.objects.filter(kind="update_rollups").order_by("id")
    assert first.status == second.status == "succeeded"
    assert (first.metrics["itemsFetched"], first.metrics["details"]["itemsUpdated"]) == (4, 4)
    assert (second.metrics["itemsInserted"], second.metrics["details"]["itemsUpdated"]) == (0, 0)
    assert second.metrics["itemsSkipped"] == 4
    assert set(Contact.objects.values_list("interaction_count", flat=True)) == {20}


def test_must_show_same_message_id_from_takeout_and_api_is_counted_once_in_rollups(user):
    jane = person(user, "jane@acme.example")
    api = email(user, source_id="18c0ffee", message_id="<same@acme.example>")
    takeout = email(user, source_id="takeout-0001", message_id="<same@acme.example>")
    for copy in (api, takeout):
        take_part(copy, jane, "from")
    InteractionDuplicate.objects.create(
        user=user, interaction=takeout, canonical=api, reason="message-id"
    )

    contact_rollups_refresh(user_id=user.pk, contact_ids=[jane.pk], now=NOW)

    jane.refresh_from_db()
    assert (jane.interaction_count, jane.inbound_count) == (1, 1)
    assert [r["id"] for r in jane.recent_interactions] == [api.pk]


def test_must_show_two_users_rollups_are_separate(user, other_user):
    mine, theirs = person(user, "jane@acme.example"), person(other_user, "jane@acme.example")
    take_part(email(user), mine, "from")
    for _ in range(3):
        take_part(email(other_user), theirs, "from")

    # the other user's contact named in this user's refresh is left alone
    assert contact_rollups_refresh(user_id=user.pk, contact_ids=[mine.pk, theirs.pk], now=NOW) == 1

    assert Contact.objects.get(pk=theirs.pk).interaction_count == 0
    contact_rollups_refresh(user_id=other_user.pk, contact_ids=[theirs.pk], now=NOW)
    assert Contact.objects.get(pk=mine.pk).interaction_count == 1
    assert Contact.objects.get(pk=theirs.pk).interaction_count == 3


def test_item7_a_merge_counts_moved_participations_on_the_target(user):
    source, target = person(user, "j.doe@acme.example"), person(user, "jane@acme.example")
    shared = email(user, at=days(3))
    take_part(shared, source, "to")
    take_part(shared, target, "cc")
    take_part(email(user, at=days(1)), source, "from")
    contact_rollups_refresh(user_id=user.pk, contact_ids=[source.pk, target.pk], now=NOW)

    # what contact_merge does: move the participations, mark the source, refresh both
    InteractionParticipant.objects.filter(contact=source).update(contact=target)
    Contact.objects.filter(pk=source.pk).update(merged_into=target)
    contact_rollups_refresh(user_id=user.pk, contact_ids=[source.pk, target.pk], now=NOW)

    source.refresh_from_db()
    target.refresh_from_db()
    assert (source.interaction_count, target.interaction_count) == (0, 2)
    assert target.last_interaction_at == days(1)


def test_item5_the_nightly_refresh_is_scheduled_and_refreshes_every_live_contact(user, other_user):
    schedule = Schedule.objects.get(name=NIGHTLY_SCHEDULE)
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == (
        "contacts.rollups.rollups_nightly",
        Schedule.DAILY,
        -1,
    )
    mine = [person(user, f"p{n}@acme.example") for n in range(3)]
    for contact in mine:
        take_part(email(user), contact, "from")
    theirs = person(other_user, "jane@acme.example")
    take_part(email(other_user), theirs, "from")

    assert rollups_nightly() == 2
    assert rollups_nightly() == 0  # one a day per user
    run_due_jobs(until_empty=True)

    jobs = Job.objects.filter(kind="update_rollups").order_by("user_id")
    assert [(j.status, j.metrics["itemsFetched"]) for j in jobs] == [
        ("succeeded", 3),
        ("succeeded", 1),
    ]
    assert set(Contact.objects.values_list("interaction_count", flat=True)) == {1}


def test_item5_past_its_deadline_it_continues_from_the_last_contact(
    user, pipeline_config, monkeypatch
):
    monkeypatch.setattr("contacts.processors.update_rollups.CHUNK_SIZE", 2)
    pipeline_config(job_wall_clock_cap_s=0.0)
    contacts = [person(user, f"p{n}@acme.example") for n in range(5)]
    batch = in_batch(many(user, 3, contacts))

    enqueue("update_rollups", user=user, batch_id=batch, dedupe_key=f"r:{batch}")
    run_due_jobs(until_empty=True)

    jobs = Job.objects.filter(kind="update_rollups").order_by("id")
    assert [j.metrics["itemsFetched"] for j in jobs] == [2, 2, 1]
    assert set(Contact.objects.values_list("interaction_count", flat=True)) == {3}


def _migrated(app_label: str) -> None:
    """What `migrate` tells an app once its migrations ran (post_migrate, sender = the app)."""
    from django.apps import apps
    from django.db.models.signals import post_migrate

    config = apps.get_app_config(app_label)
    post_migrate.send(
        sender=config,
        app_config=config,
        verbosity=0,
        interactive=False,
        using="default",
        apps=apps,
        plan=[],
    )


def test_item5_contacts_registers_the_nightly_schedule_not_timeline():
    """Rollups are contacts': an installation without timeline still gets the nightly refresh."""
    Schedule.objects.filter(name=NIGHTLY_SCHEDULE).delete()
    _migrated("timeline")
    assert not Schedule.objects.filter(name=NIGHTLY_SCHEDULE).exists()
    _migrated("contacts")
    assert Schedule.objects.get(name=NIGHTLY_SCHEDULE).func == "contacts.rollups.rollups_nightly"


def test_item6_an_estimated_date_sets_no_last_interaction_and_is_flagged_on_the_timeline(user):
    """A Takeout message without a date of its own is dated when it was imported: it must not
    make the contact look recently active, and its timeline event says the date is estimated."""
    from contacts.selectors import batch_interaction_ids
    from tests.contacts.factories import BASE, OWN, account_for, extract, gmail, ingest
    from timeline.models import TimelineEvent
    from timeline.services import timeline_events_write

    account_for(user)
    dated_in = gmail(frm="Jane <jane@acme.example>", to=[OWN], at=BASE, subject="Dated")
    dated_out = gmail(frm=OWN, to=["jane@acme.example"], at=BASE, subject="Sent", labels=("SENT",))
    undated_in = gmail(frm="Jane <jane@acme.example>", to=[OWN], subject="Undated in")
    undated_out = gmail(frm=OWN, to=["jane@acme.example"], subject="Undated out", labels=("SENT",))
    for message in (undated_in, undated_out):  # as the Takeout import stores them
        del message["internalDate"]
        message["_occurredAtEstimated"] = True
    batch = ingest(user, mails=[dated_in, dated_out, undated_in, undated_out])
    extract(user, batch)
    ids = batch_interaction_ids(user_id=user.pk, batch_id=batch)
    timeline_events_write(user_id=user.pk, interaction_ids=ids)
    jane = Contact.objects.get(user=user, primary_email="jane@acme.example")
    contact_rollups_refresh(user_id=user.pk, contact_ids=[jane.pk])

    jane.refresh_from_db()
    assert jane.interaction_count == 4
    assert (jane.last_interaction_at, jane.last_inbound_at, jane.last_outbound_at) == (
        BASE,
        BASE,
        BASE,
    )
    events = {e.title: e.data for e in TimelineEvent.objects.filter(contact=jane)}
    assert events["Received: Undated in"]["estimated"] is True
    assert events["Sent: Undated out"]["estimated"] is True
    assert "estimated" not in events["Received: Dated"]
