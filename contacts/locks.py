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

from jobs.locks import ROLLUPS_LOCK_NAMESPACE, user_xact_lock

__all__ = ["ROLLUPS_LOCK_NAMESPACE", "rollups_lock"]


def rollups_lock(*, user_id: int) -> None:
    """Take the user's rollups lock, held until the current transaction ends (waits while
    another transaction holds it). Call inside a transaction: outside one the lock would end
    with the statement that took it."""
    user_xact_lock(ROLLUPS_LOCK_NAMESPACE, user_id=user_id)
