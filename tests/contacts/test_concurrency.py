"""Two extract_contacts chunks of one user at once (two batches naming the same new person)
create one contact, not two: chunks of a user take a transaction-scoped advisory lock."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from contacts.models import Contact, ContactIdentity, InteractionParticipant
from tests.contacts.factories import OWN, account_for, extract, gmail, ingest


@pytest.mark.django_db(transaction=True)
def test_two_batches_at_once_create_one_contact_per_person(user):
    account_for(user)
    first = ingest(user, mails=[gmail(frm="Jane <jane@acme.example>", to=[OWN])])
    second = ingest(user, mails=[gmail(frm="Jane Doe <jane@acme.example>", to=[OWN])])
    done = {}
    both_in_a_transaction = threading.Barrier(2, timeout=10)

    def worker(name, batch):
        try:
            done[name] = extract(user, batch, in_transaction=both_in_a_transaction.wait)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=("a", first)),
        threading.Thread(target=worker, args=("b", second)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert done["a"].contacts_created + done["b"].contacts_created == 1
    assert Contact.objects.filter(user=user).count() == 1
    assert ContactIdentity.objects.filter(user=user).count() == 1
    assert InteractionParticipant.objects.filter(user=user).count() == 2
