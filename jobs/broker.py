"""Hands job ids to django-q2; the Job row stays the source of truth, the broker only delivers."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from jobs.config import get_config

RUN_JOB = "jobs.runner.run_job"


def offer(job_ids: Iterable[int]) -> int:
    """Put job ids on the broker now. Returns how many were offered."""
    config = get_config()
    ids = list(job_ids)
    if config.handoff == "none" or not ids:
        return 0
    from django_q.tasks import async_task

    # The hard kill sits a minute behind the cooperative deadline.
    timeout = int(config.job_wall_clock_cap_s) + 60
    for job_id in ids:
        async_task(RUN_JOB, job_id, task_name=f"job-{job_id}", timeout=timeout)
    return len(ids)


def offer_on_commit(job_id: int) -> None:
    transaction.on_commit(lambda: offer([job_id]))
