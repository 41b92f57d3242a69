"""jobs.locks: the per-user advisory locks the apps share (extract, rollups, insights)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from jobs.locks import (
    EXTRACT_LOCK_NAMESPACE,
    INSIGHTS_LOCK_NAMESPACE,
    ROLLUPS_LOCK_NAMESPACE,
    user_xact_lock,
)

pytestmark = pytest.mark.django_db(transaction=True)


def held_advisory_locks() -> set[tuple[int, int]]:
    """(namespace, key) of the advisory locks this session holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT classid::int8, objid::int8 FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
        )
        return set(cursor.fetchall())


def test_the_namespaces_are_distinct():
    assert len({EXTRACT_LOCK_NAMESPACE, ROLLUPS_LOCK_NAMESPACE, INSIGHTS_LOCK_NAMESPACE}) == 3


def test_the_lock_is_the_users_in_its_namespace_and_ends_with_the_transaction():
    with transaction.atomic():
        user_xact_lock(ROLLUPS_LOCK_NAMESPACE, user_id=42)
        user_xact_lock(INSIGHTS_LOCK_NAMESPACE, user_id=42)
        assert held_advisory_locks() == {
            (ROLLUPS_LOCK_NAMESPACE, 42),
            (INSIGHTS_LOCK_NAMESPACE, 42),
        }
    assert held_advisory_locks() == set()


def test_a_user_id_beyond_32_bits_still_gets_a_lock():
    with transaction.atomic():
        user_xact_lock(EXTRACT_LOCK_NAMESPACE, user_id=2**40 + 7)
        assert held_advisory_locks() == {(EXTRACT_LOCK_NAMESPACE, (2**40 + 7) % 2147483647)}


def test_outside_a_transaction_it_refuses_rather_than_lock_for_one_statement():
    with pytest.raises(RuntimeError, match="needs a transaction"):
        user_xact_lock(ROLLUPS_LOCK_NAMESPACE, user_id=1)
    assert held_advisory_locks() == set()
