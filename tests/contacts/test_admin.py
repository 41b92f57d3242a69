"""Issue 9, contacts admin: search, detail with identities / timeline / interactions, merge with a
confirmation page, suggestions accepted / rejected, and one user's rows hidden from another."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from contacts.models import Contact, ContactMerge, MergeSuggestion
from jobs.models import Interaction
from tests.contacts.factories import OWN, account_for, extract, gmail, ingest
from timeline.models import TimelineEvent

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:contacts_contact_changelist"
SUGGESTIONS = "admin:contacts_mergesuggestion_changelist"


def mail_people(user, own=OWN):
    account_for(user, email=own, aliases=())
    extract(
        user,
        ingest(
            user,
            mails=[
                gmail(frm="Katherine Johnson <kjohnson@nasa.example>", to=[own]),
                gmail(frm="Katherine Johnsen <kj@nasa.example>", to=[own], subject="Orbit"),
                gmail(frm="Dorothy Vaughan <dv@nasa.example>", to=[own]),
            ],
        ),
    )


@pytest.fixture
def people(user, other_user):
    mail_people(user)
    mail_people(other_user, own="bob@example.com")  # the same people mail Bob too


def staff_member(user):
    """A staff member (not a superuser) with the contacts permissions."""
    user.is_staff = True
    user.save()
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="contacts", codename__regex="^(view|change)_"
        )
    )
    return user


def test_non_staff_cannot_open_the_contacts_admin(client, user, people):
    client.force_login(user)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_superuser_searches_by_name_email_and_domain(staff_client, people):
    for term, expected in [
        ("Vaughan", 2),  # one per user: the operator sees all
        ("kj@nasa", 2),
        ("nasa.example", 6),
        ("nobody", 0),
    ]:
        response = staff_client.get(reverse(CHANGELIST), {"q": term})
        assert response.status_code == 200
        assert len(response.context["cl"].result_list) == expected, term


def test_contact_page_shows_identities_rollups_timeline_and_interactions(
    staff_client, user, people
):
    contact = Contact.objects.get(user=user, primary_email="kj@nasa.example")
    interaction = Interaction.objects.get(user=user, subject="Orbit")
    TimelineEvent.objects.create(
        user=user,
        contact=contact,
        interaction=interaction,
        event_type="email_received",
        occurred_at=interaction.occurred_at,
        title="Orbit (timeline)",
    )
    response = staff_client.get(reverse("admin:contacts_contact_change", args=[contact.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "kj@nasa.example" in page  # identities inline
    assert "Orbit (timeline)" in page  # latest timeline events
    assert "Orbit" in page and "e-mail received" in page  # latest interactions
    assert "interactions_90d" not in response.context["adminform"].form.fields  # read-only


def test_merge_into_asks_for_confirmation_then_merges(client, user, people):
    client.force_login(staff_member(user))
    a = Contact.objects.get(user=user, primary_email="kjohnson@nasa.example")
    b = Contact.objects.get(user=user, primary_email="kj@nasa.example")
    data = {"action": "merge_into", "_selected_action": [a.pk, b.pk]}
    response = client.post(reverse(CHANGELIST), data)
    assert response.status_code == 200
    assert b"Merge into" in response.content and b"kj@nasa.example" in response.content
    assert not ContactMerge.objects.exists()  # nothing before confirming
    response = client.post(reverse(CHANGELIST), {**data, "confirm": "yes", "target": a.pk})
    assert response.status_code == 302
    b.refresh_from_db()
    assert b.merged_into_id == a.pk
    assert ContactMerge.objects.get().source_id == b.pk


def test_suggestions_side_by_side_accept_and_reject(client, user, people):
    client.force_login(staff_member(user))
    response = client.get(reverse(SUGGESTIONS))
    assert response.status_code == 200
    page = response.content.decode()
    assert "kjohnson@nasa.example" in page and "kj@nasa.example" in page
    (suggestion,) = response.context["cl"].result_list  # only ada's own suggestion
    response = client.post(
        reverse(SUGGESTIONS), {"action": "reject", "_selected_action": [suggestion.pk]}, follow=True
    )
    assert "Rejected 1 suggestion(s)." in [str(m) for m in response.context["messages"]]
    suggestion.refresh_from_db()
    assert suggestion.status == "rejected"
    response = client.post(
        reverse(SUGGESTIONS), {"action": "accept", "_selected_action": [suggestion.pk]}, follow=True
    )
    assert any("already rejected" in str(m) for m in response.context["messages"])
    assert not Contact.objects.filter(user=user, merged_into__isnull=False).exists()


def test_suggestion_accept_merges(client, user, people):
    client.force_login(staff_member(user))
    suggestion = MergeSuggestion.objects.get(user=user)
    response = client.post(
        reverse(SUGGESTIONS), {"action": "accept", "_selected_action": [suggestion.pk]}, follow=True
    )
    assert "Accepted 1 suggestion(s)." in [str(m) for m in response.context["messages"]]
    assert Contact.objects.filter(user=user, merged_into__isnull=False).count() == 1


def test_staff_without_change_permission_cannot_accept(client, user, people):
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_mergesuggestion"))
    client.force_login(user)
    suggestion = MergeSuggestion.objects.get(user=user)
    response = client.post(
        reverse(SUGGESTIONS), {"action": "accept", "_selected_action": [suggestion.pk]}
    )
    assert response.status_code in (200, 302)
    suggestion.refresh_from_db()
    assert suggestion.status == "pending"


def test_two_users_no_admin_page_shows_one_users_contacts_to_another(
    client, user, other_user, people
):
    client.force_login(staff_member(user))
    listed = client.get(reverse(CHANGELIST)).context["cl"].result_list
    assert {c.user_id for c in listed} == {user.pk} and len(listed) == 3
    theirs = Contact.objects.filter(user=other_user).first()
    assert client.get(reverse("admin:contacts_contact_change", args=[theirs.pk])).status_code in (
        302,
        404,
    )
    suggestions = client.get(reverse(SUGGESTIONS)).context["cl"].result_list
    assert {s.user_id for s in suggestions} == {user.pk}
    # an action on another user's rows does nothing
    mine = Contact.objects.get(user=user, primary_email="kj@nasa.example")
    client.post(
        reverse(CHANGELIST),
        {
            "action": "merge_into",
            "_selected_action": [mine.pk, theirs.pk],
            "confirm": "yes",
            "target": mine.pk,
        },
    )
    theirs.refresh_from_db()
    assert theirs.merged_into_id is None
    response = client.get(reverse(SUGGESTIONS) + f"?q={theirs.primary_email}")
    assert {s.user_id for s in response.context["cl"].result_list} <= {user.pk}


def test_item2_admin_undo_out_of_order_is_reported_not_raised(client, user, people):
    from contacts.services.merge import contact_merge

    client.force_login(staff_member(user))
    kjohnson, kj, dv = (
        Contact.objects.get(user=user, primary_email=e)
        for e in ("kjohnson@nasa.example", "kj@nasa.example", "dv@nasa.example")
    )
    first = contact_merge(user=user, source=kj, target=kjohnson)
    later = contact_merge(user=user, source=kjohnson, target=dv)
    merges = reverse("admin:contacts_contactmerge_changelist")

    response = client.post(merges, {"action": "undo", "_selected_action": [first.pk]}, follow=True)
    assert response.status_code == 200
    assert any("undo the later merge first" in str(m) for m in response.context["messages"])
    first.refresh_from_db()
    assert first.undone_at is None
    # both selected: undone newest first
    response = client.post(
        merges, {"action": "undo", "_selected_action": [first.pk, later.pk]}, follow=True
    )
    assert "Undid 2 merge(s)." in [str(m) for m in response.context["messages"]]
    assert not Contact.objects.filter(user=user, merged_into__isnull=False).exists()
