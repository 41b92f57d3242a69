"""Issue 9, contact_list and `manage.py contacts`: search, live contacts only, per user."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from contacts.models import Contact
from contacts.selectors import contact_list
from contacts.services.merge import contact_merge
from tests.contacts.factories import OWN, account_for, extract, gmail, ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def contacts(user):
    account_for(user)
    extract(
        user,
        ingest(
            user,
            mails=[
                gmail(frm="Jane Doe <jane.doe@acme.example>", to=[OWN]),
                gmail(frm="Bob Stone <bob@builders.example>", to=[OWN]),
                gmail(frm="Zoe Field <Z.Field+x@gmail.com>", to=[OWN]),
            ],
        ),
    )
    by_email = {c.primary_email: c for c in Contact.objects.filter(user=user)}
    # rollups are the rollup stage's; set two here to see the ordering
    Contact.objects.filter(pk=by_email["bob@builders.example"].pk).update(
        last_interaction_at=datetime(2025, 3, 1, tzinfo=UTC), interaction_count=4
    )
    Contact.objects.filter(pk=by_email["jane.doe@acme.example"].pk).update(
        last_interaction_at=datetime(2025, 2, 1, tzinfo=UTC), interaction_count=2
    )
    return by_email


def emails(queryset) -> list[str]:
    return [c.primary_email for c in queryset]


def test_contact_list_orders_by_recent_activity_and_searches(user, contacts):
    assert emails(contact_list(user=user)) == [
        "bob@builders.example",
        "jane.doe@acme.example",
        "zfield@gmail.com",
    ]
    assert emails(contact_list(user=user, query="jane")) == ["jane.doe@acme.example"]
    assert emails(contact_list(user=user, query="ACME.example")) == ["jane.doe@acme.example"]
    assert emails(contact_list(user=user, query="Stone")) == ["bob@builders.example"]
    # the address as seen, and any spelling with the same matching key
    assert emails(contact_list(user=user, query="z.field+x")) == ["zfield@gmail.com"]
    assert emails(contact_list(user=user, query="z.f.ield@googlemail.com")) == ["zfield@gmail.com"]
    assert emails(contact_list(user=user, query="display_name", ordering="display_name")) == []
    assert emails(contact_list(user=user, ordering="display_name"))[0] == "bob@builders.example"
    with pytest.raises(ValueError, match="unknown ordering"):
        contact_list(user=user, ordering="password")


def test_contact_list_shows_live_contacts_only(user, contacts):
    contact_merge(
        user=user, source=contacts["zfield@gmail.com"], target=contacts["jane.doe@acme.example"]
    )
    assert "zfield@gmail.com" not in emails(contact_list(user=user))
    # the merged identity now finds the target
    assert emails(contact_list(user=user, query="zfield")) == ["jane.doe@acme.example"]


def test_contacts_command_lists_searches_and_prints_json(user, contacts):
    out = StringIO()
    call_command("contacts", "ada", stdout=out)
    text = out.getvalue()
    assert text.index("Bob Stone") < text.index("Jane Doe") < text.index("Zoe Field")
    assert "3 of 3 contact(s)" in text
    out = StringIO()
    call_command("contacts", "ada@example.com", "--search", "acme", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["count"] == 1
    (jane,) = data["contacts"]
    assert (jane["name"], jane["email"], jane["companyDomain"]) == (
        "Jane Doe",
        "jane.doe@acme.example",
        "acme.example",
    )
    assert jane["lastInteractionAt"] == "2025-02-01T00:00:00+00:00"
    out = StringIO()
    call_command("contacts", str(user.pk), "--search", "nobody", stdout=out)
    assert "no contacts matching 'nobody'" in out.getvalue()


def test_contacts_command_unknown_user_is_a_clear_error(user):
    with pytest.raises(CommandError, match="user 'ghost' does not exist"):
        call_command("contacts", "ghost")
