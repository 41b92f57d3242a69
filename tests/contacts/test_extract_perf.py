"""Issue 9, extract_contacts performance: fewer statements per chunk, same results."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contacts.models import Contact, ContactIdentity, InteractionParticipant
from contacts.services.extract import contacts_extract
from jobs.models import Interaction
from tests.contacts.factories import OWN, account_for
from tests.contacts.test_extract import _statements

pytestmark = pytest.mark.django_db


def test_item_perf_a_chunk_runs_at_most_10_statements_whatever_its_size(django_user_model):
    # every path taken: new contacts, bulk mail, duplicates, renames, fuzzy suggestions
    small = _statements(django_user_model, 10)
    large = _statements(django_user_model, 500)
    assert small == large, (small, large)
    first, second, _rerun, statements = small
    assert statements <= 10, small  # was 15 (16 with the bulk rule's look-up)
    assert first <= 12 and second <= 12  # with the savepoint pair


def test_item_perf_names_with_quotes_backslashes_and_braces_round_trip(user):
    # array parameters are sent as PostgreSQL array literals: quoting must hold
    account_for(user)
    odd = 'O"Brien \\ {Jr}, Ünïcode'
    rows = [
        Interaction(
            user=user,
            source="gmail",
            source_id=f"m{n}",
            kind="email_inbound",
            occurred_at=datetime(2025, 1, 1 + n, 12, 0, 0, 123456, tzinfo=UTC),
            subject="s",
            metadata={
                "from": {"email": f"ob{n}@acme.example", "name": name},
                "to": [{"email": OWN, "name": ""}],
                "message_id": f"<{n}@x>",
            },
        )
        for n, name in enumerate([odd, "NULL", "{}", "a,b", 'x\\"y'])
    ]
    ids = [i.pk for i in Interaction.objects.bulk_create(rows)]
    report = contacts_extract(user_id=user.pk, interaction_ids=ids)
    assert report.inserted == 5
    names = {c.primary_email: c.display_name for c in Contact.objects.filter(user=user)}
    assert names == {
        "ob0@acme.example": odd,
        "ob1@acme.example": "NULL",
        "ob2@acme.example": "{}",
        "ob3@acme.example": "a,b",
        "ob4@acme.example": 'x\\"y',
    }
    assert ContactIdentity.objects.get(key="ob0@acme.example").names == {odd: 1}
    occurred = InteractionParticipant.objects.get(identity__key="ob0@acme.example").occurred_at
    assert occurred == rows[0].occurred_at
