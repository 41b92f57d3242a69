"""run_job(): claim, run to a deadline, record the outcome; tick(): due jobs and lost leases."""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import (
    BooleanField,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Value,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Least, Now
from django.utils import timezone

from jobs.broker import held_job_ids, offer
from jobs.config import PipelineConfig, get_config
from jobs.context import JobContext, Metrics, metrics_line
from jobs.dispatcher import get_processor
from jobs.errors import (
    DeadlineExceeded,
    JobCancelled,
    LeaseLost,
    PermanentError,
    TransientError,
)
from jobs.models import Job, JobStatus
from jobs.models.job import CLAIMABLE_STATUSES

logger = logging.getLogger("jobs.runner")
metrics_logger = logging.getLogger("jobs.metrics")

ERROR_TEXT_LIMIT = 4000
LEASE_LOST = "lease-lost"  # a run's status when another attempt took its job
LEASE_EXPIRED = "lease expired: the worker stopped without recording an outcome"


def clip_error(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    """An error text cut to `limit` characters by leaving out its middle: a traceback's start
    (where it began) and its end (the exception's own line, what went wrong) are kept."""
    if len(text) <= limit:
        return text
    head = limit // 4
    left_out = len(text) - limit
    for _ in range(3):  # the count's own digits change the room left for the tail
        marker = f"\n[... {left_out} characters left out ...]\n"
        tail = limit - head - len(marker)
        left_out = len(text) - head - tail
    return text[:head] + marker + text[len(text) - tail :]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff_delay(
    attempt: int, *, config: PipelineConfig, retry_after: float | None = None
) -> float:
    """Seconds before the next attempt: full jitter over an exponential, capped; never before
    the provider's Retry-After."""
    ceiling = min(config.backoff_cap_s, config.backoff_base_s * 2 ** max(attempt - 1, 0))
    delay = random.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def claim(job_id: int, worker: str, *, config: PipelineConfig) -> Job | None:
    """Atomically move a due job to `running` under a lease; None if someone else has it.

    Every time is the database's (statement_timestamp(): the same for every host, and not
    frozen at the start of a caller's transaction), so a worker whose clock is off neither
    claims early nor writes a lease that ends early or late.
    """
    lease_s = config.job_wall_clock_cap_s + config.lease_grace_s
    rows = list(
        Job.objects.raw(
            f"""
            UPDATE {Job._meta.db_table}
               SET status = %s, attempts = attempts + 1, locked_by = %s,
                   lease_expires_at = statement_timestamp() + make_interval(secs => %s),
                   started_at = statement_timestamp(), finished_at = NULL,
                   updated_at = statement_timestamp()
             WHERE id = %s AND status IN (%s, %s) AND run_after <= statement_timestamp()
                   AND NOT cancel_requested
            RETURNING *
            """,
            [
                JobStatus.RUNNING,
                worker,
                lease_s,
                job_id,
                JobStatus.QUEUED,
                JobStatus.RETRYING,
            ],
        )
    )
    return rows[0] if rows else None


def run_job(job_id: int) -> str:
    """Run one job if it is still claimable. Safe to call for the same id any number of times."""
    config = get_config()
    worker = worker_name()
    job = claim(job_id, worker, config=config)
    if job is None:
        _not_claimed(job_id)
        return "not-claimed"
    started = time.monotonic()
    ctx: JobContext | None = None
    outcome: _Outcome
    try:
        spec = get_processor(job.kind)
        ctx = JobContext(
            job=job,
            payload=spec.parse_payload(job.payload),
            deadline=started + config.job_wall_clock_cap_s,
            logger=logging.getLogger(f"jobs.kind.{job.kind}"),
            cancel_check_interval_s=config.cancel_check_interval_s,
        )
        metrics = spec.func(job, ctx)
        outcome = _Outcome(JobStatus.SUCCEEDED, metrics=metrics or _tracked(job, ctx))
    except LeaseLost:
        outcome = _Outcome(LEASE_LOST, metrics=_tracked(job, ctx))
    except JobCancelled as exc:
        outcome = _Outcome(JobStatus.CANCELLED, error=str(exc), metrics=_tracked(job, ctx))
    except PermanentError as exc:
        outcome = _Outcome(JobStatus.FAILED, error=_describe(exc), metrics=_tracked(job, ctx))
    except TransientError as exc:
        outcome = _retry_or_fail(job, _describe(exc), exc.retry_after, config)
        outcome.timed_out = isinstance(exc, DeadlineExceeded)
        outcome.metrics = _tracked(job, ctx)
    except Exception as exc:  # unknown errors are transient, recorded with their traceback
        outcome = _retry_or_fail(job, traceback.format_exc(limit=20), None, config)
        outcome.metrics = _tracked(job, ctx)
        logger.exception("job %s (%s) raised %s", job.pk, job.kind, type(exc).__name__)
    duration_ms = int((time.monotonic() - started) * 1000)
    lease_ends = started + config.job_wall_clock_cap_s + config.lease_grace_s
    line = _finish_once_reachable(job, worker, outcome, ctx, duration_ms, lease_ends=lease_ends)
    metrics_logger.info(json.dumps(line, separators=(",", ":")))
    return str(line["status"])


def _not_claimed(job_id: int) -> None:
    """A delivery that found nothing to claim. A job still waiting with a cancel request is
    finished as cancelled here (a row an older version left holding its lane); one delivered
    before it was due (a host's clock, an operator's change) is marked not offered, so the
    hand-off pump offers it once due rather than tick minutes later. A duplicate delivery of a
    job already taken changes nothing."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {Job._meta.db_table}
               SET status = CASE WHEN cancel_requested THEN %(cancelled)s ELSE status END,
                   finished_at = CASE WHEN cancel_requested THEN statement_timestamp()
                                      ELSE finished_at END,
                   offered_at = NULL, updated_at = statement_timestamp()
             WHERE id = %(id)s AND status IN (%(queued)s, %(retrying)s)
                   AND (cancel_requested OR run_after > statement_timestamp())
            """,
            {
                "id": job_id,
                "cancelled": JobStatus.CANCELLED,
                "queued": JobStatus.QUEUED,
                "retrying": JobStatus.RETRYING,
            },
        )


@dataclass
class _Outcome:
    status: str
    metrics: Metrics | None = None
    error: str = ""
    delay_s: float = 0.0  # before the next attempt, when retrying
    timed_out: bool = False


def _tracked(job: Job, ctx: JobContext | None) -> Metrics | None:
    """The work the run registered with ctx.track(), read whatever the outcome."""
    if ctx is None:
        return None
    try:
        return ctx.progress()
    except Exception:  # a broken progress reader must not lose the outcome
        logger.exception("job %s (%s): reading its tracked metrics failed", job.pk, job.kind)
        return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _retry_or_fail(
    job: Job, error: str, retry_after: float | None, config: PipelineConfig
) -> _Outcome:
    if job.attempts >= job.max_attempts:
        return _Outcome(JobStatus.FAILED, error=f"attempts exhausted; last error: {error}")
    delay = backoff_delay(job.attempts, config=config, retry_after=retry_after)
    return _Outcome(JobStatus.RETRYING, error=error, delay_s=delay)


# The outcome write. One statement (autocommitted when there are no follow-ups) that only the
# lease holder can win, and that reads `cancel_requested` on the row it updates: a cancel that
# landed at any moment before it turns whatever the run ended with into `cancelled` (row locks
# order it against job_cancel's UPDATE). Times come from the database's clock.
_FINAL_STATUS = "CASE WHEN cancel_requested THEN %(cancelled)s ELSE %(status)s END"
_FINISH_SQL = f"""
UPDATE {{table}}
   SET status = {_FINAL_STATUS},
       metrics = jsonb_set(%(metrics)s::jsonb, '{{{{status}}}}', to_jsonb({_FINAL_STATUS}::text)),
       errors = CASE WHEN %(error)s = '' THEN errors
                     ELSE errors || jsonb_build_array(jsonb_build_object(
                          'attempt', attempts, 'at', statement_timestamp(), 'error', %(error)s))
                END,
       last_error = CASE WHEN %(error)s = '' THEN last_error ELSE %(error)s END,
       run_after = CASE WHEN {_FINAL_STATUS} = %(retrying)s
                        THEN statement_timestamp() + make_interval(secs => %(delay)s)
                        ELSE run_after END,
       finished_at = CASE WHEN {_FINAL_STATUS} = %(retrying)s THEN NULL
                          ELSE statement_timestamp() END,
       lease_expires_at = NULL, locked_by = '', offered_at = NULL,
       updated_at = statement_timestamp()
 WHERE id = %(id)s AND status = %(running)s AND locked_by = %(worker)s AND attempts = %(attempt)s
RETURNING status, run_after
"""


# Pauses between attempts to record an outcome while the database is unreachable.
OUTCOME_RETRY_FIRST_PAUSE_S = 0.5
OUTCOME_RETRY_MAX_PAUSE_S = 5.0


def _finish_once_reachable(
    job: Job,
    worker: str,
    outcome: _Outcome,
    ctx: JobContext | None,
    duration_ms: int,
    *,
    lease_ends: float,
) -> dict[str, Any]:
    """_finish, tried again on a new connection when the server cut this one (a restart, a
    failover: the run itself usually failed on it too), until the job's lease would end.

    Without this the outcome was lost with the connection and the job stayed `running` until
    tick returned it after its lease (cap + grace: 12 minutes by default). Repeating is safe:
    the outcome and its follow-ups commit together in one fenced write; if a commit landed but
    its acknowledgement was lost, the next try finds the job no longer held and writes nothing.
    """
    pause = OUTCOME_RETRY_FIRST_PAUSE_S
    while True:
        try:
            return _finish(job, worker, outcome, ctx, duration_ms)
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block or time.monotonic() + pause >= lease_ends:
                raise
            logger.warning(
                "job %s (%s): recording its outcome failed (%s); reconnecting in %.1f s",
                job.pk,
                job.kind,
                type(exc).__name__,
                pause,
            )
            connection.close()
            time.sleep(pause)
            pause = min(pause * 2, OUTCOME_RETRY_MAX_PAUSE_S)


def _finish(
    job: Job, worker: str, outcome: _Outcome, ctx: JobContext | None, duration_ms: int
) -> dict[str, Any]:
    from jobs.enqueue import enqueue

    metrics = outcome.metrics or Metrics()
    line = metrics_line(
        metrics,
        user_id=job.user_id,
        batch_id=job.batch_id,
        duration_ms=duration_ms,
        timed_out=outcome.timed_out,
        job=job,
        status=outcome.status,
    )
    if outcome.status == LEASE_LOST:
        # The run stopped at its fence: another attempt owns the job; nothing is recorded.
        logger.warning("job %s lost its lease during the run; nothing recorded", job.pk)
        return line
    stored = dict(line)
    if metrics.details:
        stored["details"] = metrics.details
    followups = ctx.followups if ctx is not None and outcome.status == JobStatus.SUCCEEDED else []
    params: dict[str, str | int | float] = {
        "status": outcome.status,
        "cancelled": JobStatus.CANCELLED,
        "retrying": JobStatus.RETRYING,
        "running": JobStatus.RUNNING,
        "metrics": json.dumps(stored),
        "error": clip_error(outcome.error),
        "delay": outcome.delay_s,
        "id": job.pk,
        "worker": worker,
        "attempt": job.attempts,
    }
    # The outcome and the follow-ups commit together; a lone UPDATE needs no transaction.
    with transaction.atomic() if followups else nullcontext(), connection.cursor() as cursor:
        cursor.execute(_FINISH_SQL.format(table=Job._meta.db_table), params)
        row = cursor.fetchone()
        if row is None:
            # tick() took the job back (lease expired): this late result is dropped and the
            # newer attempt wins.
            logger.warning("job %s lost its lease before finishing; outcome dropped", job.pk)
            line["status"] = LEASE_LOST
            return line
        line["status"] = row[0]
        if row[0] != JobStatus.SUCCEEDED:
            # A pending cancel (or any other outcome) starts nothing: no continuation, no
            # next stage.
            return line
        for follow in followups:
            enqueue(
                follow.kind,
                user=job.user_id,
                payload=follow.payload,
                # A new chain gets a batch of its own and its kind's lane.
                batch_id=uuid.uuid4() if follow.new_chain else job.batch_id,
                dedupe_key=follow.dedupe_key,
                parent=job,
                priority=follow.priority,
                run_after=(
                    timezone.now() + timedelta(seconds=follow.delay_s) if follow.delay_s else None
                ),
            )
    return line


@dataclass(frozen=True, slots=True)
class TickResult:
    leases_expired: int
    offered: int


def tick() -> TickResult:
    """Return jobs whose lease expired (their worker died) and offer due jobs the broker does
    not deliver: never offered, or offered long ago and no longer held by the broker.

    Registered as a django-q2 Schedule; `runjobs` calls it too. Idempotent and cheap: the
    queries use partial indexes (job_lease_idx, job_due_idx).
    """
    config = get_config()
    finish_cancel_requested()
    expired = return_expired_leases()
    due_ids = list(due_for_offer(config).values_list("pk", flat=True)[:TICK_OFFER_LIMIT])
    if due_ids:
        Job.objects.filter(pk__in=due_ids).update(offered_at=Now())
    offered = offer(due_ids)
    return TickResult(leases_expired=expired, offered=offered)


TICK_OFFER_LIMIT = 1000
# The longest a job waits between two re-offers when the broker cannot be read.
REOFFER_BACKOFF_CAP = timedelta(hours=1)


def due_for_offer(config: PipelineConfig) -> QuerySet[Job]:
    """Due jobs to hand to the broker, most urgent first (priority, then run_after).

    A job offered less than `reoffer_after_s` ago is left alone (its message may be on its way
    to a worker). Past that, it is offered again only when the broker no longer holds its
    message (lost with a restarted broker, or delivered before it was due); under a backlog
    the waiting messages are not duplicated, so the queue does not grow. A broker that cannot
    be read gets an exponential back-off per job instead: a job is offered again once it has
    waited as long again as it had when last offered (at least `reoffer_after_s`, at most an
    hour).
    """
    due = Job.objects.filter(
        status__in=CLAIMABLE_STATUSES, run_after__lte=Now(), cancel_requested=False
    ).order_by("priority", "run_after", "id")
    stale = Q(offered_at__lte=Now() - timedelta(seconds=config.reoffer_after_s))
    if config.handoff == "none" or not due.filter(stale).exists():
        return due.filter(Q(offered_at__isnull=True) | stale)
    held = _held_job_ids()
    if held is not None:
        # one array parameter, however long the queue
        due = due.alias(
            held=RawSQL(f"{Job._meta.db_table}.id = ANY(%s)", (sorted(held),), BooleanField())
        ).filter(held=False)
    else:
        waited = ExpressionWrapper(
            Least(F("offered_at") - F("run_after"), Value(REOFFER_BACKOFF_CAP)),
            output_field=DurationField(),
        )
        stale &= Q(offered_at__lte=ExpressionWrapper(Now() - waited, output_field=DateTimeField()))
    return due.filter(Q(offered_at__isnull=True) | stale)


def _held_job_ids() -> set[int] | None:
    try:
        return held_job_ids()
    except Exception:  # an unreachable broker: offer() will say so; back off meanwhile
        logger.exception("could not read the broker's queue; re-offers back off instead")
        return None


def finish_cancel_requested() -> int:
    """Finish as `cancelled` every waiting job that carries a cancel request.

    Such rows are never claimed, and their lane stays taken; the outcome write no longer leaves
    any (a pending cancel wins over every outcome), but a database written by an older version
    may hold some, stuck `retrying`.
    """
    return Job.objects.filter(status__in=CLAIMABLE_STATUSES, cancel_requested=True).update(
        status=JobStatus.CANCELLED,
        finished_at=Now(),
        lease_expires_at=None,
        locked_by="",
        offered_at=None,
        updated_at=Now(),
    )


def return_expired_leases() -> int:
    """Return every running job whose lease expired (by the database's clock) to `retrying`, or
    `failed` when its attempts are used up, `cancelled` when a cancel was pending."""
    table = Job._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table}
               SET status = CASE WHEN cancel_requested THEN %(cancelled)s
                                 WHEN attempts >= max_attempts THEN %(failed)s
                                 ELSE %(retrying)s END,
                   finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts
                                      THEN statement_timestamp() END,
                   errors = errors || jsonb_build_array(%(error)s::jsonb || jsonb_build_object(
                       'attempt', attempts, 'at', statement_timestamp())),
                   last_error = %(message)s,
                   locked_by = '', lease_expires_at = NULL, offered_at = NULL,
                   run_after = statement_timestamp(), updated_at = statement_timestamp()
             WHERE status = %(running)s AND lease_expires_at < statement_timestamp()
            """,
            {
                "cancelled": JobStatus.CANCELLED,
                "failed": JobStatus.FAILED,
                "retrying": JobStatus.RETRYING,
                "running": JobStatus.RUNNING,
                "error": json.dumps({"error": LEASE_EXPIRED}),
                "message": LEASE_EXPIRED,
            },
        )
        return cursor.rowcount


@dataclass
class RunReport:
    ran: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def run_due_jobs(
    *,
    kinds: list[str] | None = None,
    max_jobs: int | None = None,
    until_empty: bool = False,
    on_result: Callable[[int, str], None] | None = None,
) -> RunReport:
    """Run due jobs in this process, oldest due first. With `until_empty`, keep going until none
    is due (jobs waiting out a backoff are not due)."""
    report = RunReport()
    while max_jobs is None or report.ran < max_jobs:
        finish_cancel_requested()
        return_expired_leases()
        due = Job.objects.filter(
            status__in=[JobStatus.QUEUED, JobStatus.RETRYING],
            run_after__lte=Now(),
            cancel_requested=False,
        ).order_by("priority", "run_after", "id")
        if kinds:
            due = due.filter(kind__in=kinds)
        limit = 100 if max_jobs is None else max_jobs - report.ran
        ids = list(due.values_list("pk", flat=True)[:limit])
        if not ids:
            break
        for job_id in ids:
            status = run_job(job_id)
            if status == "not-claimed":
                continue
            report.ran += 1
            report.outcomes[status] = report.outcomes.get(status, 0) + 1
            if on_result is not None:
                on_result(job_id, status)
        if not until_empty:
            break
    return report
