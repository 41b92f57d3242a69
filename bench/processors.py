"""No-op work for bench/queue.py: a job kind for our engine and a bare function for django-q2."""

from __future__ import annotations

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import Job


@processor("bench_noop")
def bench_noop(job: Job, ctx: JobContext) -> Metrics:
    return Metrics()


def noop() -> None:
    """The bare django-q2 task: does nothing."""
