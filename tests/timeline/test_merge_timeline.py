"""A contact merge moves timeline events and rollups to the target; unmerge restores them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contacts.models import Contact, InteractionParticipant
from contacts.rollups import ROLLUP_FIELDS, contact_rollups_refresh
from contacts.selectors import batch_interaction_ids
from contacts.services.merge import contact_merge, contact_unmerge
from tests.contacts.factories import OWN, account_for, extract, gmail, ingest
from tests.timeline.people import email, meeting, person, take_part
from timeline.models import TimelineEvent
from timeline.selectors import contact_timeline
from timeline.services import timeline_events_write

pytestmark = pytest.mark.django_db


def snapshot(user):
    return {
        "events": list(
            TimelineEvent.objects.filter(user=user)
            .order_by("id")
            .values_list("id", "contact_id", "interaction_id", "event_type", "title", "data")
        ),
        "rollups": list(Contact.objects.filter(user=user).order_by("id").values(*ROLLUP_FIELDS)),
    }


def test_must_show_unmerge_restores_timeline_and_rollups_exactly(user):
    source = person(user, "j.doe@acme.example", "J. Doe")
    target = person(user, "jane.doe@acme.example", "Jane Doe")
    now = email(user).occurred_at
    interactions = []
    for n, contact in enumerate([source, source, target]):
        interactions.append(email(user, at=now - timedelta(days=10 * (n + 1))))
        take_part(interactions[-1], contact, "from")
    shared = meeting(user, at=now - timedelta(days=5))
    take_part(shared, source, "attendee", "accepted")
    take_part(shared, target, "attendee", "accepted")
    interactions.append(shared)
    timeline_events_write(user_id=user.pk, interaction_ids=[i.pk for i in interactions])
    contact_rollups_refresh(user_id=user.pk, contact_ids=[source.pk, target.pk])
    before = snapshot(user)

    merge = contact_merge(user=user, source=source, target=target)

    # the source's own events follow it; the shared meeting stays where the target has one
    assert len(merge.moved["timeline_events"]) == 2
    assert len(contact_timeline(user=user, contact=target).events) == 4
    target.refresh_from_db()
    source.refresh_from_db()
    assert (target.interaction_count, source.interaction_count) == (4, 0)

    contact_unmerge(merge=merge)

    assert snapshot(user) == before


def _process(user, batch) -> list[int]:
    """extract_contacts then write_timeline over one batch, as the stages run them."""
    extract(user, batch)
    ids = batch_interaction_ids(user_id=user.pk, batch_id=batch)
    timeline_events_write(user_id=user.pk, interaction_ids=ids)
    return ids


def test_item3_unmerge_is_exact_for_mail_that_arrived_during_the_merge(user):
    account_for(user)
    _process(
        user,
        ingest(
            user,
            mails=[
                gmail(frm="Katherine Johnson <kjohnson@nasa.example>", to=[OWN]),
                gmail(frm="Katherine Johnson <kjohnson@nasa.example>", to=[OWN]),
                gmail(frm="Katherine Johnsen <kj@nasa.example>", to=[OWN]),
            ],
        ),
    )
    target = Contact.objects.get(user=user, primary_email="kjohnson@nasa.example")
    source = Contact.objects.get(user=user, primary_email="kj@nasa.example")
    names = {target.pk: "Katherine Johnson", source.pk: "Katherine Johnsen"}
    assert dict(Contact.objects.filter(user=user).values_list("id", "display_name")) == names

    merge = contact_merge(user=user, source=source, target=target)
    # new mail from the source's address while the merge stands: attributed to the target,
    # whose name is recomputed over both contacts' identities
    (new_mail,) = _process(
        user,
        ingest(user, mails=[gmail(frm="Katherine Johnsen <kj@nasa.example>", to=[OWN])]),
    )
    (event,) = TimelineEvent.objects.filter(user=user, interaction_id=new_mail)
    assert event.contact_id == target.pk
    target.refresh_from_db()
    assert target.display_name == "Katherine Johnsen"

    contact_unmerge(merge=merge)

    (participation,) = InteractionParticipant.objects.filter(user=user, interaction_id=new_mail)
    assert participation.contact_id == source.pk
    event.refresh_from_db()
    assert event.contact_id == source.pk
    assert dict(Contact.objects.filter(user=user).values_list("id", "display_name")) == names
