"""The hand-off pump: delivers retries (and jobs enqueued for later) within about a second of
their run_after, with any broker.

A job set to `retrying` (or enqueued with a future run_after, or whose hand-off failed) is
written with `offered_at` unset. Every django-q2 worker process runs one daemon thread that,
once a second, marks the due ones offered (one UPDATE over the `job_unoffered_idx` partial
index; SKIP LOCKED, so two pumps never take the same job) and hands them to the broker.

The same thread returns dead workers' jobs: every `LEASE_CHECK_INTERVAL_S` it runs tick's
lease half (`return_expired_leases`, one UPDATE over the `job_lease_idx` partial index; several
pumps doing it at once take each row once). `tick` is a django-q2 task like the jobs, so under a
backlog it waits behind the queue; a host's death must not.

Why not django-q2's own tools: its scheduler runs every 30 s at best (the cluster's guard loop
calls it every 30 cycles); the ORM broker could hide a message until a time (OrmQ.lock) but the
Redis broker cannot; and a worker that waits for a retry holds one of the cluster's few slots.
The thread holds no slot and only its own database connection; if its process dies, the next
worker's pump (or `tick`) picks the jobs up, since the state is in the rows, not in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import close_old_connections, connection

from jobs.broker import offer
from jobs.config import get_config

logger = logging.getLogger("jobs.pump")

PUMP_INTERVAL_S = 1.0
PUMP_BATCH = 200
PUMP_ERROR_PAUSE_S = 30.0
LEASE_CHECK_INTERVAL_S = 15.0


def offer_due_unoffered(*, limit: int = PUMP_BATCH) -> int:
    """Hand up to `limit` due jobs that were never offered to the broker, most urgent first.
    Returns how many were offered."""
    return _offer_due(limit)[1]


def _offer_due(limit: int) -> tuple[int, int]:
    """(taken, offered): fewer offered than taken means the broker refused (see offer())."""
    from jobs.models import Job, JobStatus

    table = Job._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} SET offered_at = statement_timestamp()
             WHERE id IN (
                   SELECT id FROM {table}
                    WHERE status IN (%s, %s) AND offered_at IS NULL
                          AND run_after <= statement_timestamp() AND NOT cancel_requested
                    ORDER BY priority, run_after, id
                    LIMIT %s
                      FOR UPDATE SKIP LOCKED)
            RETURNING id, priority, run_after
            """,
            [JobStatus.QUEUED, JobStatus.RETRYING, limit],
        )
        rows = sorted(cursor.fetchall(), key=lambda row: (row[1], row[2], row[0]))
    return len(rows), offer([row[0] for row in rows])


class HandOffPump(threading.Thread):
    def __init__(
        self,
        interval_s: float = PUMP_INTERVAL_S,
        lease_check_interval_s: float = LEASE_CHECK_INTERVAL_S,
    ) -> None:
        super().__init__(name="crm-pipeline-hand-off-pump", daemon=True)
        self.interval_s = interval_s
        self.lease_check_interval_s = lease_check_interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        from jobs.runner import return_expired_leases

        pause = self.interval_s
        next_lease_check = time.monotonic() + self.lease_check_interval_s
        while not self.stopped.wait(pause):
            pause = self.interval_s
            try:
                close_old_connections()
                if time.monotonic() >= next_lease_check:
                    next_lease_check = time.monotonic() + self.lease_check_interval_s
                    expired = return_expired_leases()
                    if expired:
                        logger.warning(
                            "hand-off pump: %d job(s) whose lease expired returned to be retried",
                            expired,
                        )
                while True:
                    taken, offered = _offer_due(PUMP_BATCH)
                    if offered < taken:  # the broker is down (offer() logged it): wait
                        pause = PUMP_ERROR_PAUSE_S
                        break
                    if taken < PUMP_BATCH:
                        break  # else a burst: keep going until the due ones are out
            except Exception:
                logger.exception("hand-off pump: offering due jobs failed; trying again later")
                connection.close()
                pause = PUMP_ERROR_PAUSE_S
        connection.close()

    def stop(self) -> None:
        self.stopped.set()


_pump: HandOffPump | None = None


def start_pump(**kwargs: Any) -> None:
    """django-q2's post_spawn receiver: one pump per worker process (none with handoff none)."""
    global _pump
    if get_config().handoff == "none" or (_pump is not None and _pump.is_alive()):
        return
    _pump = HandOffPump()
    _pump.start()


def connect_pump() -> None:
    from django_q.signals import post_spawn

    post_spawn.connect(start_pump, dispatch_uid="crm_pipeline.hand_off_pump")
