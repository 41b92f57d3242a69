"""Per-user, transaction-scoped Postgres advisory locks, shared by the apps above `jobs`.

A lock is a namespace (one per kind of writer) and the user's id: `pg_advisory_xact_lock`
takes it, waits while another transaction holds it and releases it when the transaction ends.
The namespaces in use are kept here, so that two writers never pick the same one by accident.
"""

from __future__ import annotations

from django.db import connection

EXTRACT_LOCK_NAMESPACE = 7_319_001  # contacts.services.extract: one extract chunk per user
ROLLUPS_LOCK_NAMESPACE = 7_319_002  # contacts.locks.rollups_lock: one rollups writer per user
INSIGHTS_LOCK_NAMESPACE = 7_319_101  # insights.services: one insights write per user

# (any user id fits: a collision only makes two users' writers wait for each other)
USER_LOCK_SQL = "SELECT pg_advisory_xact_lock(%(ns)s, (%(user_id)s::int8 %% 2147483647)::int4)"


def user_lock_params(namespace: int, user_id: int) -> dict[str, int]:
    """USER_LOCK_SQL's parameters, for a caller that runs statements through its own cursor."""
    return {"ns": namespace, "user_id": user_id}


def user_xact_lock(namespace: int, *, user_id: int) -> None:
    """Take the user's lock in `namespace` until the current transaction ends. Call inside a
    transaction: outside one the lock would end with the statement that took it."""
    if not connection.in_atomic_block:
        raise RuntimeError("user_xact_lock() needs a transaction (transaction.atomic())")
    with connection.cursor() as cursor:
        cursor.execute(USER_LOCK_SQL, user_lock_params(namespace, user_id))
