"""enqueue(): write the Job row, hand it to the broker only after the transaction commits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models.functions import Now
from django.utils import timezone

from jobs.broker import offer_on_commit
from jobs.config import get_config
from jobs.dispatcher import get_processor
from jobs.models import Job
from jobs.models.job import ACTIVE_STATUSES
from jobs.payloads import Payload


def enqueue(
    kind: str,
    *,
    user: AbstractBaseUser | int,
    payload: Payload | dict[str, Any] | None = None,
    batch_id: uuid.UUID | None = None,
    dedupe_key: str | None = None,
    run_after: datetime | None = None,
    parent: Job | None = None,
    max_attempts: int | None = None,
    priority: int | None = None,
) -> Job:
    """Create a job of `kind` for `user` and deliver it once the surrounding transaction commits.

    The payload is validated against the kind's declared shape (`PayloadError`, a `ValueError`,
    for a bad one; `UnknownKindError`, a `LookupError`, for an unregistered kind). When an active
    job already holds `dedupe_key` (the kind's lane by default), that job is returned instead and
    `job.deduplicated` is True. `priority` (0 first .. 9 last) defaults to the parent's, else 0.
    """
    spec = get_processor(kind)
    config = get_config()
    data = (payload if isinstance(payload, Payload) else spec.parse_payload(payload)).to_dict()
    user_id = user if isinstance(user, int) else user.pk
    if dedupe_key is None:
        dedupe_key = spec.lane_key(user_id=user_id, payload=data)
    # Without run_after the job is due at the database's clock (run_after's db_default), the
    # clock claim() compares it with; a given run_after is the caller's.
    due = run_after is None or run_after <= timezone.now()
    handed_off = due and config.handoff != "none"
    job = Job(
        user_id=user_id,
        kind=kind,
        payload=data,
        batch_id=batch_id or (parent.batch_id if parent else uuid.uuid4()),
        dedupe_key=dedupe_key,
        parent=parent,
        max_attempts=max_attempts or spec.max_attempts or config.job_max_attempts,
        priority=priority if priority is not None else (parent.priority if parent else 0),
        # Left unset when nothing is handed off, so tick() offers the job once it is due.
        offered_at=Now() if handed_off else None,
    )
    if run_after is not None:
        job.run_after = run_after
    if dedupe_key is None:
        _insert(job, handed_off=handed_off, defaulted=run_after is None)
        job.deduplicated = False  # type: ignore[attr-defined]
        if due:
            offer_on_commit(job.pk)
        return job
    try:
        # A savepoint only where the lane's unique index can refuse the row.
        with transaction.atomic():
            _insert(job, handed_off=handed_off, defaulted=run_after is None)
    except IntegrityError:
        existing = Job.objects.filter(dedupe_key=dedupe_key, status__in=ACTIVE_STATUSES).first()
        if existing is None:
            raise
        existing.deduplicated = True  # type: ignore[attr-defined]
        return existing
    job.deduplicated = False  # type: ignore[attr-defined]
    if due:
        offer_on_commit(job.pk)
    return job


def _insert(job: Job, *, handed_off: bool, defaulted: bool) -> None:
    """Insert the row; run_after (when `defaulted`) and offered_at get the database's clock."""
    job.save(force_insert=True)
    if handed_off:
        # offered_at was written as Now(), the same statement_timestamp() as a defaulted run_after
        if defaulted:
            job.offered_at = job.run_after
        else:
            job.refresh_from_db(fields=["offered_at"])
