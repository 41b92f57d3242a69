"""Issue 9, isolation: two users who mail the same person have two separate contacts, and no
selector shows one user's contacts to another."""

from __future__ import annotations

import pytest

from contacts.models import Contact, ContactIdentity, InteractionParticipant, MergeSuggestion
from contacts.selectors import batch_interaction_ids, contact_list
from contacts.services.merge import MergeError, contact_merge, merge_suggestion_accept
from tests.contacts.factories import account_for, extract, gmail, ingest

pytestmark = pytest.mark.django_db


def test_two_users_who_mail_the_same_person_have_two_separate_contacts(user, other_user):
    account_for(user, email="ada@example.com", aliases=())
    account_for(other_user, email="bob@example.com", aliases=())

    def mails(to):
        return [
            gmail(frm="Jane Doe <jane@acme.example>", to=[to], message_id="<s@a>"),
            gmail(frm="Jane D <jane@acme.example>", to=[to], message_id="<t@a>"),
        ]

    ada_batch = ingest(user, mails=mails("ada@example.com"))
    # Bob's copies: the same Message-IDs and the same batch id must not cross users
    bob_batch = ingest(other_user, mails=mails("bob@example.com"), batch_id=ada_batch)
    assert bob_batch == ada_batch
    extract(user, ada_batch)
    extract(other_user, bob_batch)

    ada_jane = Contact.objects.get(user=user)
    bob_jane = Contact.objects.get(user=other_user)
    assert ada_jane.pk != bob_jane.pk
    assert ada_jane.primary_email == bob_jane.primary_email == "jane@acme.example"
    assert set(ada_jane.identities.values_list("user_id", flat=True)) == {user.pk}
    assert set(
        InteractionParticipant.objects.filter(contact=bob_jane).values_list("user_id", flat=True)
    ) == {other_user.pk}
    assert ContactIdentity.objects.count() == 2
    # no duplicate across users: each has its own canonical copy
    assert InteractionParticipant.objects.filter(user=user).count() == 2
    assert InteractionParticipant.objects.filter(user=other_user).count() == 2
    assert len(batch_interaction_ids(user_id=user.pk, batch_id=ada_batch)) == 2

    assert list(contact_list(user=user)) == [ada_jane]
    assert list(contact_list(user=other_user, query="jane")) == [bob_jane]
    assert list(contact_list(user=user, query="acme")) == [ada_jane]

    # no merge across users, and no suggestion pairs them
    with pytest.raises(MergeError):
        contact_merge(user=user, source=bob_jane, target=ada_jane)
    assert not MergeSuggestion.objects.exists()


def test_a_suggestion_cannot_be_decided_by_another_user(user, other_user):
    account_for(user, email="ada@example.com", aliases=())
    extract(
        user,
        ingest(
            user,
            mails=[
                gmail(frm="Katherine Johnson <kjohnson@nasa.example>", to=["ada@example.com"]),
                gmail(frm="Katherine Johnsen <kj@nasa.example>", to=["ada@example.com"]),
            ],
        ),
    )
    suggestion = MergeSuggestion.objects.get()
    with pytest.raises(MergeError, match="no such merge suggestion"):
        merge_suggestion_accept(user=other_user, suggestion=suggestion)
