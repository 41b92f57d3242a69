"""contact_timeline (keyset pages), `manage.py timeline`, and the read-only timeline admin."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests.timeline.people import NOW, email, meeting, person, take_part
from timeline.models import TimelineEvent
from timeline.selectors import BadCursor, contact_timeline, timeline_summary
from timeline.services import timeline_events_write

pytestmark = pytest.mark.django_db


@pytest.fixture
def jane(user):
    jane = person(user, "jane.doe@gmail.com", "Jane Doe")
    interactions = []
    for n in range(7):
        interactions.append(email(user, at=NOW - timedelta(days=n), subject=f"Mail {n}"))
        take_part(interactions[-1], jane, "from")
    # two events at the very same moment: the id breaks the tie
    twin = email(user, at=NOW - timedelta(days=3), subject="Twin")
    take_part(twin, jane, "to")
    call = meeting(user, at=NOW - timedelta(days=1, hours=2), subject="Call")
    take_part(call, jane, "attendee", "tentative")
    interactions += [twin, call]
    timeline_events_write(user_id=user.pk, interaction_ids=[i.pk for i in interactions])
    return jane


def test_item9_contact_timeline_pages_newest_first_by_occurred_at_and_id(user, jane):
    expected = list(TimelineEvent.objects.filter(contact=jane).order_by("-occurred_at", "-id"))
    assert len(expected) == 9

    seen, before, pages = [], None, 0
    while True:
        page = contact_timeline(user=user, contact=jane, before=before, limit=4)
        seen += page.events
        pages += 1
        if page.next_before is None:
            break
        before = page.next_before
        if pages == 1:
            # a new event arriving between pages does not shift the next ones (keyset)
            newest = email(user, at=NOW + timedelta(hours=1), subject="New")
            take_part(newest, jane, "from")
            timeline_events_write(user_id=user.pk, interaction_ids=[newest.pk])
    assert [e.pk for e in seen] == [e.pk for e in expected]
    assert pages == 3
    with pytest.raises(BadCursor):
        contact_timeline(user=user, contact=jane, before="yesterday")
    with pytest.raises(ValueError):
        contact_timeline(user=user, contact=jane, limit=0)


def test_must_show_another_users_contact_gives_an_empty_timeline(user, other_user, jane):
    assert contact_timeline(user=other_user, contact=jane).events == []
    assert len(contact_timeline(user=user, contact=jane.pk).events) == 9


def test_item9_timeline_command_by_email_spelling_or_id(user, jane):
    out = StringIO()
    call_command("timeline", "ada", "Jane.Doe+crm@GoogleMail.com", "--limit", "3", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"Jane Doe <jane.doe@gmail.com> (contact {jane.pk})"
    assert lines[1].endswith("email_received    Received: Mail 0")
    assert lines[2].endswith("email_received    Received: Mail 1")
    assert lines[3].endswith("meeting           Meeting: Call")
    assert lines[-1].startswith("more: --before ")

    out = StringIO()
    call_command("timeline", str(user.pk), str(jane.pk), "--limit", "50", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["contact"] == {"id": jane.pk, "name": "Jane Doe", "email": "jane.doe@gmail.com"}
    assert len(data["events"]) == 9 and data["nextBefore"] is None
    assert data["events"][2]["type"] == "meeting"
    assert data["events"][2]["data"]["response_status"] == "tentative"


def test_item9_timeline_command_follows_a_merged_contact_to_its_target(user, jane):
    old = person(user, "jd@acme.example", "J D")
    old.merged_into = jane
    old.save()
    out = StringIO()
    call_command("timeline", "ada", str(old.pk), "--limit", "1", stdout=out)
    assert out.getvalue().startswith(f"Jane Doe <jane.doe@gmail.com> (contact {jane.pk})")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "jane.doe@gmail.com"], "user 'nobody' does not exist"),
        (["ada", "stranger@acme.example"], "ada has no contact 'stranger@acme.example'"),
        (["ada", "999999"], "ada has no contact '999999'"),
        (["ada", "not an address"], "'not an address' is neither a contact id nor an e-mail"),
        (["ada", "jane.doe@gmail.com", "--before", "x"], "not a timeline cursor: 'x'"),
    ],
)
def test_item9_timeline_command_clear_errors(user, jane, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("timeline", *args, stdout=StringIO())


def test_must_show_timeline_command_does_not_show_another_users_contact(user, other_user, jane):
    with pytest.raises(CommandError, match="bob has no contact"):
        call_command("timeline", "bob", "jane.doe@gmail.com", stdout=StringIO())
    with pytest.raises(CommandError, match="bob has no contact"):
        call_command("timeline", "bob", str(jane.pk), stdout=StringIO())


def test_item8_timeline_admin_is_read_only_and_filters_by_type(staff_client, user, jane):
    changelist = reverse("admin:timeline_timelineevent_changelist")

    meetings = staff_client.get(changelist, {"event_type__exact": "meeting"})
    assert meetings.status_code == 200
    assert [e.event_type for e in meetings.context["cl"].result_list] == ["meeting"]
    assert "Add timeline event" not in meetings.content.decode()

    event = TimelineEvent.objects.filter(contact=jane).earliest("id")
    page = staff_client.get(reverse("admin:timeline_timelineevent_change", args=[event.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert 'name="_save"' not in body and 'name="_continue"' not in body
    assert staff_client.get(reverse("admin:timeline_timelineevent_add")).status_code == 403
    posted = staff_client.post(
        reverse("admin:timeline_timelineevent_change", args=[event.pk]), {"title": "changed"}
    )
    assert posted.status_code == 403
    event.refresh_from_db()
    assert event.title != "changed"


def test_item10_timeline_summary_counts_the_users_events_by_type(user, other_user, jane):
    theirs = person(other_user, "jane.doe@gmail.com")
    mail = email(other_user)
    take_part(mail, theirs, "from")
    timeline_events_write(user_id=other_user.pk, interaction_ids=[mail.pk])

    assert timeline_summary(user_id=user.pk) == {
        "timelineEvents": 9,
        "timelineEventsByType": {"email_received": 8, "meeting": 1},
    }
    assert timeline_summary(user_id=other_user.pk)["timelineEvents"] == 1
