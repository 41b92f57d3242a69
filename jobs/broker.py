"""Hands job ids to django-q2; the Job row stays the source of truth, the broker only delivers.

A hand-off never raises into its caller: it runs after the job's transaction committed (a view
that saved an account, a runner recording an outcome), so a broker error there is logged and
the job is left to `tick`, which offers every due job the broker does not deliver.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import nullcontext

from django.db import connection, transaction

from jobs.config import get_config

RUN_JOB = "jobs.runner.run_job"

logger = logging.getLogger("jobs.broker")


def offer(job_ids: Iterable[int]) -> int:
    """Put job ids on the broker now. Returns how many were offered.

    On a broker error the rest are not tried (the broker is most likely down); they are marked
    not offered, so the next `tick` offers them, and the error is logged, never raised.
    """
    config = get_config()
    ids = list(job_ids)
    if config.handoff == "none" or not ids:
        return 0
    from django_q.brokers import get_broker
    from django_q.tasks import async_task

    # The hard kill sits a minute behind the cooperative deadline.
    timeout = int(config.job_wall_clock_cap_s) + 60
    offered = 0
    try:
        # Inside a transaction (tick run by a caller's code), a savepoint keeps a failed ORM
        # broker insert from breaking the caller's transaction.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            broker = get_broker()
            for job_id in ids:
                async_task(
                    RUN_JOB, job_id, task_name=f"job-{job_id}", timeout=timeout, broker=broker
                )
                offered += 1
    except Exception:
        logger.exception(
            "handing %d job(s) to the broker failed (first: job %s); tick will offer them again",
            len(ids) - offered,
            ids[offered],
        )
        _mark_not_offered(ids[offered:])
    return offered


def _mark_not_offered(job_ids: list[int]) -> None:
    from jobs.models import Job

    try:
        Job.objects.filter(pk__in=job_ids).update(offered_at=None)
    except Exception:  # the database may be what failed; tick's re-offer still comes
        logger.exception("could not mark %d job(s) as not offered", len(job_ids))


def offer_on_commit(job_id: int) -> None:
    transaction.on_commit(lambda: offer([job_id]))
