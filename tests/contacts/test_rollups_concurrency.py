"""A rollups refresh that runs beside a merge, or beside another refresh, never leaves figures
computed before the other's change committed.

The refresh is one statement. Without a lock, one that started before a merge committed took
its snapshot then, waited on the merge's row lock of the target, and, once the merge
committed, wrote the target's figures from before the merge over the merged ones (Postgres
re-checks the locked row, not the figures computed from the snapshot). Rollups writers of a
user now take one transaction-scoped lock per user before their statement (and a merge before
anything else), so the later writer reads after the earlier one committed.
"""

from __future__ import annotations

import threading

import pytest
from django.db import transaction

from contacts import merge_hooks
from contacts.models import Contact, InteractionParticipant
from contacts.rollups import contact_rollups_refresh
from contacts.services.merge import contact_merge
from tests.contacts.factories import OWN, account_for, extract, gmail, ingest
from tests.fixtures.db_locks import DatabaseThread

pytestmark = pytest.mark.django_db(transaction=True)

HOOK = "test_pause_inside_the_merge"


def participations(contact: Contact) -> int:
    return (
        InteractionParticipant.objects.filter(contact=contact)
        .values("interaction_id")
        .distinct()
        .count()
    )


def test_a_refresh_started_during_a_merge_does_not_write_the_targets_old_figures(user):
    account_for(user)
    batch = ingest(
        user,
        mails=[
            gmail(frm="Ada Lovelace <ada@engine.example>", to=[OWN]),
            gmail(frm="Ada Lovelace <ada@engine.example>", to=[OWN]),
            gmail(frm="A. Lovelace <lovelace@engine.example>", to=[OWN]),
            gmail(frm=OWN, to=["lovelace@engine.example"]),
            gmail(frm=OWN, to=["lovelace@engine.example"]),
        ],
    )
    extract(user, batch)
    target = Contact.objects.get(user=user, primary_email="ada@engine.example")
    source = Contact.objects.get(user=user, primary_email="lovelace@engine.example")
    # extracted, rollups not yet refreshed (as when update_rollups runs after extract_contacts):
    # the refresh below has figures to write for the target
    assert target.interaction_count == 0

    in_merge = threading.Event()
    go_on = threading.Event()

    def pause(*, user_id: int, source_id: int, target_id: int) -> list[int]:
        # inside the merge's transaction, participations already moved, not yet committed
        in_merge.set()
        assert go_on.wait(20)
        return []

    merge_hooks.register(HOOK, move=pause, restore=lambda **kwargs: None)

    def refresh() -> None:
        with transaction.atomic():
            contact_rollups_refresh(user_id=user.pk, contact_ids=[target.pk])

    merging = DatabaseThread(lambda: contact_merge(user=user, source=source, target=target))
    refreshing = DatabaseThread(refresh)
    try:
        merging.start()
        assert in_merge.wait(20)
        refreshing.start()
        # the refresh waits for the merge: on the user's rollups lock, or (without one) on the
        # merge's row lock of the target after taking its snapshot
        refreshing.wait_until_blocked()
        go_on.set()
        merging.join(30)
        refreshing.join(30)
    finally:
        go_on.set()
        merge_hooks.unregister(HOOK)
    assert (merging.error, refreshing.error) == (None, None)
    assert not merging.is_alive() and not refreshing.is_alive()

    target.refresh_from_db()
    assert participations(target) == 5
    # the figures the refresh left are the merged contact's, not the target's from before
    assert target.interaction_count == 5, target.interaction_count
    # and a refresh now finds nothing to correct
    assert contact_rollups_refresh(user_id=user.pk, contact_ids=[target.pk]) == 0


def test_two_refreshes_of_a_user_take_turns(user):
    """A refresh whose snapshot would predate another writer's commit waits for it: the second
    refresh of a user blocks on the user's rollups lock while the first one's transaction is
    open, and then reads what the first committed."""
    account_for(user)
    batch = ingest(user, mails=[gmail(frm="Grace Hopper <grace@navy.example>", to=[OWN])])
    extract(user, batch)
    grace = Contact.objects.get(user=user, primary_email="grace@navy.example")

    first_in = threading.Event()
    first_go = threading.Event()
    second_done = threading.Event()

    def first() -> None:
        with transaction.atomic():
            contact_rollups_refresh(user_id=user.pk, contact_ids=[grace.pk])
            first_in.set()
            assert first_go.wait(20)

    def second() -> None:
        with transaction.atomic():
            contact_rollups_refresh(user_id=user.pk, contact_ids=[grace.pk])
        second_done.set()

    one = DatabaseThread(first)
    two = DatabaseThread(second)
    try:
        one.start()
        assert first_in.wait(20)
        two.start()
        assert two.wait_until_blocked() == "advisory"
        assert not second_done.is_set()
        first_go.set()
        one.join(30)
        two.join(30)
    finally:
        first_go.set()
    assert (one.error, two.error) == (None, None)
    assert second_done.is_set()
    grace.refresh_from_db()
    assert grace.interaction_count == 1
