"""Timeline admin: superusers see every user's events; other staff only their own."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.timeline.people import email, person
from timeline.models import TimelineEvent

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:timeline_timelineevent_changelist"


def event_for(user, title: str) -> TimelineEvent:
    contact = person(user, f"{title.lower()}@example.com", title)
    return TimelineEvent.objects.create(
        user=user,
        contact=contact,
        interaction=email(user, subject=title),
        event_type="email_received",
        occurred_at=contact.created_at,
        title=title,
    )


def test_item1_staff_sees_only_own_timeline_events(client, user, other_user):
    theirs = event_for(other_user, "Theirs")
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_timelineevent"))
    client.force_login(user)

    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []
    detail = client.get(reverse("admin:timeline_timelineevent_change", args=[theirs.pk]))
    assert detail.status_code == 302  # "does not exist" redirect, not the event

    mine = event_for(user, "Mine")
    response = client.get(reverse(CHANGELIST))
    assert [e.pk for e in response.context["cl"].result_list] == [mine.pk]


def test_item1_superuser_sees_every_users_events(staff_client, user, other_user):
    events = {event_for(user, "Mine").pk, event_for(other_user, "Theirs").pk}
    response = staff_client.get(reverse(CHANGELIST))
    assert {e.pk for e in response.context["cl"].result_list} == events
