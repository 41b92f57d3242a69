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


def held_job_ids() -> set[int] | None:
    """The ids of the jobs whose hand-off is still waiting on the broker's queue for a cluster
    to take it, or None when this broker cannot be read (then tick backs off instead).

    Reads django-q2's ORM queue (OrmQ rows of this cluster) or Redis list; each message is a
    signed package, verified and decoded here (tens of microseconds each).

    A message a cluster has taken is not held, on either broker: Redis pops it from the list;
    the ORM broker keeps the row but locks it for Q_CLUSTER["retry"] seconds (the job cap +
    120 s). A claimable job whose message was taken more than `reoffer_after_s` ago was never
    claimed: the cluster died with it in memory (or it still waits behind long jobs there, and
    the second delivery finds the job taken and does nothing). Counting such a row as held left
    the job waiting out the lock, 12 minutes by default, after a cluster was killed.
    """
    from django.utils import timezone
    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM
    from django_q.brokers.redis_broker import Redis
    from django_q.signing import BadSignature, SignedPackage

    broker = get_broker()
    if isinstance(broker, ORM):
        # Waiting rows: django-q2 delivers those whose lock has passed (enqueued, or taken by a
        # cluster longer than `retry` ago).
        messages = (
            broker.get_connection()
            .filter(key=broker.list_key, lock__lte=timezone.now())
            .values_list("payload", flat=True)
        )
    elif isinstance(broker, Redis):
        messages = broker.connection.lrange(broker.list_key, 0, -1)
    else:
        return None
    held = set()
    for message in messages:
        try:
            task = SignedPackage.loads(message)
        except (BadSignature, ValueError, TypeError, EOFError):
            continue  # not ours to read
        if task.get("func") == RUN_JOB and task.get("args"):
            held.add(int(task["args"][0]))
    return held


def offer_on_commit(job_id: int) -> None:
    transaction.on_commit(lambda: offer([job_id]))
