"""Test processors: record executions, fail on demand, sleep, respect or ignore the deadline."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.errors import DeadlineExceeded, JobCancelled, PermanentError, TransientError
from jobs.models import Job
from jobs.payloads import Payload
from jobs.services import job_cancel
from tests.testapp.models import Execution


@dataclass(frozen=True)
class RecordPayload(Payload):
    sleep_s: float = 0.0
    fail_transient_times: int = 0
    fail_permanent: bool = False
    retry_after: float | None = None
    items: int = 1
    continue_times: int = 0
    next_kind: str | None = None


@processor("noop")
def noop(job: Job, ctx: JobContext) -> Metrics:
    return Metrics()


@processor("record", payload=RecordPayload)
def record(job: Job, ctx: JobContext) -> Metrics:
    p: RecordPayload = ctx.payload  # type: ignore[assignment]
    Execution.objects.create(
        job_id=job.pk, attempt=job.attempts, phase="started", worker_pid=os.getpid()
    )
    end = time.monotonic() + p.sleep_s
    while time.monotonic() < end:
        time.sleep(0.05)
        ctx.checkpoint()
    if p.fail_permanent:
        raise PermanentError("asked to fail permanently")
    if job.attempts <= p.fail_transient_times:
        raise TransientError(f"asked to fail (attempt {job.attempts})", retry_after=p.retry_after)
    Execution.objects.create(
        job_id=job.pk, attempt=job.attempts, phase="effect", worker_pid=os.getpid()
    )
    if p.continue_times:
        ctx.continue_with(RecordPayload(continue_times=p.continue_times - 1, items=p.items))
    if p.next_kind:
        ctx.enqueue_next(p.next_kind)
    return Metrics(items_fetched=p.items, items_inserted=p.items)


@dataclass(frozen=True)
class SlowPayload(Payload):
    seconds: float
    cooperative: bool = True


@processor("slow", payload=SlowPayload)
def slow(job: Job, ctx: JobContext) -> Metrics:
    """Works in small steps; a cooperative run stops cleanly at the deadline."""
    p: SlowPayload = ctx.payload  # type: ignore[assignment]
    done = 0
    end = time.monotonic() + p.seconds
    while time.monotonic() < end:
        if p.cooperative and ctx.deadline_reached():
            return Metrics(items_fetched=done, items_inserted=done, timed_out=True)
        if not p.cooperative:
            ctx.checkpoint()
        time.sleep(0.02)
        done += 1
    return Metrics(items_fetched=done, items_inserted=done)


@processor("crash")
def crash(job: Job, ctx: JobContext) -> Metrics:
    return 1 / 0  # type: ignore[return-value]


@processor("laned", lane="laned:{user_id}")
def laned(job: Job, ctx: JobContext) -> Metrics:
    return Metrics()


@dataclass(frozen=True)
class PartialPayload(Payload):
    items: int = 0  # rows stored (Execution "effect" rows) before the run ends
    ends: str = "success"  # success | transient | permanent | crash | deadline | cancel
    cancel_midrun: bool = False  # an operator's cancel lands after the rows, between checkpoints
    follow: bool = False  # on success: a continuation and a next stage


@processor("partial", payload=PartialPayload, lane="partial:{user_id}")
def partial(job: Job, ctx: JobContext) -> Metrics | None:
    """Stores rows one by one with ctx.track(), then ends as asked."""
    p: PartialPayload = ctx.payload  # type: ignore[assignment]
    done = Metrics()
    ctx.track(lambda: done)
    for _ in range(p.items):
        Execution.objects.create(
            job_id=job.pk, attempt=job.attempts, phase="effect", worker_pid=os.getpid()
        )
        done.items_fetched += 1
        done.items_inserted += 1
    if p.cancel_midrun:
        job_cancel(job_ids=[job.pk])
    if p.ends == "transient":
        raise TransientError("asked to fail after storing")
    if p.ends == "permanent":
        raise PermanentError("asked to fail permanently after storing")
    if p.ends == "crash":
        raise RuntimeError("crashed after storing")
    if p.ends == "deadline":
        raise DeadlineExceeded("job passed its wall-clock deadline")
    if p.ends == "cancel":
        raise JobCancelled("cancelled by an operator")
    if p.follow:
        ctx.continue_with(PartialPayload())
        ctx.enqueue_next("noop")
    return None


# Gates a test opens to let a "fenced" run go on: job id -> (entered, release).
GATES: dict[int, tuple[threading.Event, threading.Event]] = {}


@dataclass(frozen=True)
class FencedPayload(Payload):
    rows: int = 3


@processor("fenced", payload=FencedPayload)
def fenced(job: Job, ctx: JobContext) -> Metrics:
    """Waits at its gate (when the test set one), then writes its rows under the lease fence."""
    p: FencedPayload = ctx.payload  # type: ignore[assignment]
    gate = GATES.get(job.pk)
    if gate is not None:
        entered, release = gate
        entered.set()
        release.wait(timeout=30)
    with transaction.atomic():
        ctx.fence()
        for _ in range(p.rows):
            Execution.objects.create(
                job_id=job.pk, attempt=job.attempts, phase="effect", worker_pid=os.getpid()
            )
    return Metrics(items_fetched=p.rows, items_inserted=p.rows)


@dataclass(frozen=True)
class FlakyPayload(Payload):
    fail_until: str = ""  # ISO 8601: fails permanently before this moment, succeeds after
    item: int = 0


@processor("flaky", payload=FlakyPayload)
def flaky(job: Job, ctx: JobContext) -> Metrics:
    """An upstream outage that ends: a failure group an operator retries once it is over."""
    p: FlakyPayload = ctx.payload  # type: ignore[assignment]
    if p.fail_until and datetime.now(UTC) < datetime.fromisoformat(p.fail_until):
        raise PermanentError(f"upstream answered 503 for item {p.item}")
    return Metrics(items_fetched=1, items_inserted=1)


@dataclass(frozen=True)
class LoseConnectionPayload(Payload):
    # attempts up to this one have their connection cut by the server
    times: int = 100


@processor("lose_connection", payload=LoseConnectionPayload)
def lose_connection(job: Job, ctx: JobContext) -> Metrics:
    """Has the server end this process's connection mid-run, as a restart or failover does."""
    p: LoseConnectionPayload = ctx.payload  # type: ignore[assignment]
    if job.attempts <= p.times:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    return Metrics(items_fetched=1)


def _down_through_a_long_stack_of_library_frames(depth: int, cause: Exception | None) -> None:
    if depth == 0:
        if cause is None:
            # a library error that quotes a whole response body
            raise ValueError("deep inside a library: " + "<html>response body</html> " * 200)
        raise RuntimeError("the real cause is on the last line") from cause
    _down_through_a_long_stack_of_library_frames(depth - 1, cause)


@processor("deep_crash")
def deep_crash(job: Job, ctx: JobContext) -> Metrics:
    """An unknown error raised from a library's long one: the traceback's last line is the one
    that says what went wrong."""
    try:
        _down_through_a_long_stack_of_library_frames(40, None)
    except ValueError as exc:
        _down_through_a_long_stack_of_library_frames(40, exc)
    return Metrics()
