"""What a processor receives (JobContext) and returns (Metrics)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobs.errors import DeadlineExceeded, JobCancelled, LeaseLost
from jobs.payloads import Payload

if TYPE_CHECKING:
    from jobs.models import Job


@dataclass(slots=True)
class Metrics:
    items_fetched: int = 0
    items_inserted: int = 0
    items_skipped: int = 0
    timed_out: bool = False
    # Kind-specific counts (itemsUpdated, failures, ...) kept on the job beside the standard keys.
    details: dict[str, Any] = field(default_factory=dict)


def metrics_line(
    metrics: Metrics,
    *,
    user_id: int,
    batch_id: uuid.UUID,
    duration_ms: int,
    timed_out: bool = False,
    job: Job | None = None,
    status: str | None = None,
    with_details: bool = False,
) -> dict[str, Any]:
    """The run-metrics line (the one builder): itemsFetched, itemsInserted, itemsSkipped,
    durationMs, userId, batchId, timedOut, then jobId, kind, attempt for a job, status when
    given, and the kind-specific details when asked."""
    line: dict[str, Any] = {
        "itemsFetched": metrics.items_fetched,
        "itemsInserted": metrics.items_inserted,
        "itemsSkipped": metrics.items_skipped,
        "durationMs": duration_ms,
        "userId": user_id,
        "batchId": str(batch_id),
        "timedOut": bool(timed_out or metrics.timed_out),
    }
    if job is not None:
        line.update(jobId=job.pk, kind=job.kind, attempt=job.attempts)
    if status is not None:
        line["status"] = status
    if with_details and metrics.details:
        line["details"] = metrics.details
    return line


@dataclass(frozen=True, slots=True)
class FollowUp:
    kind: str
    payload: dict[str, Any]
    dedupe_key: str | None
    # A chain of its own (a new batch, its kind's own lane) instead of this batch's next step.
    new_chain: bool = False
    # None: the parent's priority.
    priority: int | None = None
    # Due this many seconds after the run ends (0: at once).
    delay_s: float = 0.0


@dataclass(slots=True)
class JobContext:
    """Handed to `run(job, ctx)`: the parsed payload, the deadline, and follow-up jobs.

    Follow-ups are enqueued by the runner in the same transaction that marks this job
    succeeded, so a continuation never collides with its own lane and a failed run starts
    nothing.
    """

    job: Job
    payload: Payload
    deadline: float  # time.monotonic() value
    logger: logging.Logger
    cancel_check_interval_s: float = 2.0
    followups: list[FollowUp] = field(default_factory=list)
    _last_cancel_check: float = 0.0
    # What the run has done so far, read by the runner whatever the outcome (see track()).
    _progress: Callable[[], Metrics] | None = None

    @property
    def user_id(self) -> int:
        return self.job.user_id

    @property
    def batch_id(self) -> uuid.UUID:
        return self.job.batch_id

    def deadline_reached(self) -> bool:
        return time.monotonic() >= self.deadline

    def checkpoint(self) -> None:
        """Stop here if an operator cancelled the job or the deadline has passed.

        Processors that can save their place should test `deadline_reached()` first and
        return `Metrics(timed_out=True)` with a continuation; this is the backstop.
        """
        if self.deadline_reached():
            raise DeadlineExceeded("job passed its wall-clock deadline")
        now = time.monotonic()
        if now - self._last_cancel_check >= self.cancel_check_interval_s:
            self._last_cancel_check = now
            from jobs.models import Job

            if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
                raise JobCancelled("cancelled by an operator")

    def fence(self) -> None:
        """Call inside the transaction of every write that moves a cursor (a chunk of raw
        events with its SyncState, a chunk of normalization results), before the writes.

        Raises LeaseLost when this worker no longer holds the job's lease, so a late worker
        whose job tick() handed on changes nothing; while it holds the lease, the job row stays
        locked (FOR SHARE) until that transaction ends, so tick() cannot take the job mid-write
        (its UPDATE waits, then returns the job once the chunk is committed whole).
        """
        from django.db import connection

        from jobs.models import Job, JobStatus

        if not connection.in_atomic_block:
            raise RuntimeError("JobContext.fence() must be called inside transaction.atomic()")
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT 1 FROM {Job._meta.db_table}
                 WHERE id = %s AND status = %s AND locked_by = %s AND attempts = %s
                   FOR SHARE
                """,
                [self.job.pk, JobStatus.RUNNING, self.job.locked_by, self.job.attempts],
            )
            if cursor.fetchone() is None:
                raise LeaseLost(
                    f"job {self.job.pk} attempt {self.job.attempts} no longer holds its lease"
                )

    def track(self, progress: Callable[[], Metrics]) -> None:
        """Tell the runner how to read this run's work so far. The runner records it in the
        attempt's metrics whatever the outcome (success, retry, failure, cancel, deadline);
        Metrics a processor returns take its place on success."""
        self._progress = progress

    def progress(self) -> Metrics | None:
        """The tracked work so far (see track()), or None when nothing is tracked."""
        return self._progress() if self._progress is not None else None

    def continue_with(self, payload: Payload | dict[str, Any], *, delay_s: float = 0.0) -> None:
        """Enqueue the same kind again (same lane, same batch) once this run succeeds, due
        `delay_s` seconds later (a sync waiting for its quota to free)."""
        self._follow(self.job.kind, payload, self.job.dedupe_key, delay_s=delay_s)

    def others_waiting(self) -> bool:
        """Whether another job is due and waiting for a worker (not this one, not running)."""
        from django.db.models.functions import Now

        from jobs.models import Job
        from jobs.models.job import CLAIMABLE_STATUSES

        return (
            Job.objects.filter(
                status__in=CLAIMABLE_STATUSES, run_after__lte=Now(), cancel_requested=False
            )
            .exclude(pk=self.job.pk)
            .exists()
        )

    def enqueue_next(
        self,
        kind: str,
        payload: Payload | dict[str, Any] | None = None,
        *,
        dedupe_key: str | None = None,
    ) -> None:
        """Start the next stage (by kind name) for this batch once this run succeeds."""
        self._follow(kind, payload or {}, dedupe_key)

    def start_chain(
        self, kind: str, payload: Payload | dict[str, Any], *, priority: int | None = None
    ) -> None:
        """Start another chain (a new batch, in `kind`'s own lane; the backfill after a sync's
        first pass) once this run succeeds: like every follow-up, never after a failure or a
        cancel."""
        data = payload.to_dict() if isinstance(payload, Payload) else dict(payload)
        self.followups.append(FollowUp(kind, data, None, new_chain=True, priority=priority))

    def _follow(
        self,
        kind: str,
        payload: Payload | dict[str, Any],
        dedupe_key: str | None,
        *,
        delay_s: float = 0.0,
    ) -> None:
        data = payload.to_dict() if isinstance(payload, Payload) else dict(payload)
        self.followups.append(FollowUp(kind, data, dedupe_key, delay_s=max(0.0, delay_s)))
