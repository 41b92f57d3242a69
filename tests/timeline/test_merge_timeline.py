"""A contact merge moves timeline events and rollups to the target; unmerge restores them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contacts.models import Contact
from contacts.rollups import _FIELDS as ROLLUP_FIELDS
from contacts.rollups import contact_rollups_refresh
from contacts.services.merge import contact_merge, contact_unmerge
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
