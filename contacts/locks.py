"""Per-user locks of the contacts app: transaction-scoped Postgres advisory locks.

- The **rollups lock** (`rollups_lock`): every writer of a user's contact rollups takes it
  before the statement that computes them (`contacts.rollups.contact_rollups_refresh`), and a
  merge or unmerge takes it before anything else (before its row locks, so that a refresh
  holding the lock and waiting for a merged contact's row can never wait for a merge that
  waits for the lock). The rollups are one statement computed from a snapshot: without the
  lock, a refresh whose snapshot predates a merge's or another refresh's commit could wait
  on that writer's row lock and then write its older figures over the newer ones. With it, the
  later writer's statement starts after the earlier one committed, and reads what it wrote.
"""

from __future__ import annotations

from django.db import connection

# pg_advisory_xact_lock(namespace, user id): the namespaces of this project's per-user locks
# (contacts/services/extract.py holds 7_319_001, insights/services.py 7_319_101).
ROLLUPS_LOCK_NAMESPACE = 7_319_002
# (any user id fits: a collision only makes two users' writers wait for each other)
_LOCK_SQL = "SELECT pg_advisory_xact_lock(%(ns)s, (%(user_id)s::int8 %% 2147483647)::int4)"


def rollups_lock(*, user_id: int) -> None:
    """Take the user's rollups lock, held until the current transaction ends (waits while
    another transaction holds it). Call inside a transaction: outside one the lock would end
    with the statement that took it."""
    if not connection.in_atomic_block:
        raise RuntimeError("rollups_lock() needs a transaction (transaction.atomic())")
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_SQL, {"ns": ROLLUPS_LOCK_NAMESPACE, "user_id": user_id})
