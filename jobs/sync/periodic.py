"""The periodic sync: the django-q2 Schedule PERIODIC_SYNC (jobs.schedules) calls periodic_sync."""

from __future__ import annotations

import logging

from jobs.sync.enqueue import sync_enqueue_all_accounts

logger = logging.getLogger(__name__)


def periodic_sync() -> int:
    """Enqueue Gmail and Calendar syncs for every active account; returns how many started.

    Cheap and idempotent: per-account lanes turn a sync that is still active into a no-op, so a
    slow chain is never doubled by the next tick.
    """
    started = sync_enqueue_all_accounts()
    created = sum(1 for item in started if item.created)
    logger.info(
        "periodic sync: %d job(s) started, %d already active", created, len(started) - created
    )
    return created
