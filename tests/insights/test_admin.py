"""Insights admin: a user's insights by kind, status and user, readable evidence, and the status
actions for staff with the change permission only; other staff see only their own."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from insights.models import Insight
from tests.insights.helpers import person, stored

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:insights_insight_changelist"
CHANGE = "admin:insights_insight_change"


def staff(user, *codenames: str):
    user.is_staff = True
    user.save()
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def listed(response) -> list[int]:
    assert response.status_code == 200
    return [i.pk for i in response.context["cl"].result_list]


def test_superuser_filters_by_kind_status_and_user(staff_client, user, other_user):
    mine = stored(user, "Reply to Jane", kind="awaiting_reply")
    cold = stored(user, "Going cold: Bob", kind="going_cold", status="dismissed")
    theirs = stored(other_user, "Reply to Carl", kind="awaiting_reply")

    response = staff_client.get(reverse(CHANGELIST))
    assert set(listed(response)) == {mine.pk, cold.pk, theirs.pk}
    (users,) = [f for f in response.context["cl"].filter_specs if f.field_path == "user"]
    assert {pk for pk, _ in users.lookup_choices} == {user.pk, other_user.pk}
    assert set(listed(staff_client.get(reverse(CHANGELIST), {"kind": "awaiting_reply"}))) == {
        mine.pk,
        theirs.pk,
    }
    assert listed(staff_client.get(reverse(CHANGELIST), {"status": "dismissed"})) == [cold.pk]
    assert set(listed(staff_client.get(reverse(CHANGELIST), {"user__id__exact": user.pk}))) == {
        mine.pk,
        cold.pk,
    }
    assert listed(staff_client.get(reverse(CHANGELIST), {"q": "carl"})) == [theirs.pk]


def test_staff_see_and_change_only_their_own_insights(client, user, other_user):
    theirs = stored(other_user, "Reply to Carl")
    mine = stored(user, "Reply to Jane")
    client.force_login(staff(user, "view_insight", "change_insight"))

    response = client.get(reverse(CHANGELIST))
    assert listed(response) == [mine.pk]
    # the user filter offers only users whose insights they can see
    offered = [
        pk
        for spec in response.context["cl"].filter_specs
        if spec.field_path == "user"
        for pk, _ in spec.lookup_choices
    ]
    assert other_user.pk not in offered
    assert "bob" not in response.content.decode()
    assert client.get(reverse(CHANGE, args=[theirs.pk])).status_code == 302

    response = client.post(
        reverse(CHANGELIST),
        {"action": "dismiss", "_selected_action": [mine.pk, theirs.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert Insight.objects.get(pk=mine.pk).status == "dismissed"
    assert Insight.objects.get(pk=theirs.pk).status == "new"
    assert "1 insight(s) marked dismissed." in [str(m) for m in response.context["messages"]]


def test_staff_without_change_permission_cannot_run_the_actions(client, user):
    mine = stored(user, "Reply to Jane")
    client.force_login(staff(user, "view_insight"))

    response = client.get(reverse(CHANGELIST))
    assert listed(response) == [mine.pk]
    assert response.context["action_form"] is None  # no action is offered
    client.post(reverse(CHANGELIST), {"action": "mark_done", "_selected_action": [mine.pk]})
    assert Insight.objects.get(pk=mine.pk).status == "new"


def test_the_actions_set_each_status(staff_client, user):
    rows = [stored(user, f"Insight {n}") for n in range(3)]
    for action, status in (("mark_seen", "seen"), ("mark_done", "done"), ("dismiss", "dismissed")):
        staff_client.post(reverse(CHANGELIST), {"action": action, "_selected_action": [rows[0].pk]})
        assert Insight.objects.get(pk=rows[0].pk).status == status
    assert {Insight.objects.get(pk=r.pk).status for r in rows[1:]} == {"new"}


def test_the_detail_page_shows_the_evidence_and_is_read_only(staff_client, user):
    jane = person(user, "jane@acme.example", "Jane Doe")
    insight = stored(
        user,
        "Reply to Jane",
        contact=jane,
        evidence={"days_waiting": 4.5, "thread_id": "th-1", "interaction_ids": [11, 12]},
    )

    response = staff_client.get(reverse(CHANGE, args=[insight.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "<th>days_waiting</th><td>4.5</td>" in page
    assert "<th>thread_id</th><td>th-1</td>" in page
    assert "[\n  11,\n  12\n]" in page
    assert 'name="title"' not in page and 'name="status"' not in page  # no editable fields
    assert 'name="_save"' not in page
    staff_client.post(reverse(CHANGE, args=[insight.pk]), {"title": "changed", "status": "done"})
    insight.refresh_from_db()
    assert (insight.title, insight.status) == ("Reply to Jane", "new")
    assert staff_client.get(reverse("admin:insights_insight_add")).status_code == 403
