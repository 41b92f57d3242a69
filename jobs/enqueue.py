"""enqueue(): write the Job row, hand it to the broker only after the transaction commits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
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
    now = timezone.now()
    due = run_after is None or run_after <= now
    job = Job(
        user_id=user_id,
        kind=kind,
        payload=data,
        run_after=run_after or now,
        batch_id=batch_id or (parent.batch_id if parent else uuid.uuid4()),
        dedupe_key=dedupe_key,
        parent=parent,
        max_attempts=max_attempts or spec.max_attempts or config.job_max_attempts,
        priority=priority if priority is not None else (parent.priority if parent else 0),
        # Left unset when nothing is handed off, so tick() offers the job once it is due.
        offered_at=now if due and config.handoff != "none" else None,
    )
    if dedupe_key is None:
        job.save(force_insert=True)
        job.deduplicated = False  # type: ignore[attr-defined]
        if due:
            offer_on_commit(job.pk)
        return job
    try:
        # A savepoint only where the lane's unique index can refuse the row.
        with transaction.atomic():
            job.save(force_insert=True)
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
