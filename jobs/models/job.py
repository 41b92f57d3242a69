"""The Job row: the source of truth for every unit of pipeline work."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class JobStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    RETRYING = "retrying", "retrying"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING)
CLAIMABLE_STATUSES = (JobStatus.QUEUED, JobStatus.RETRYING)
FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    # 0 runs first, 9 last (Oban's convention): backfills run below incremental syncs. A job's
    # follow-ups (continuations, later stages) inherit it.
    priority = models.PositiveSmallIntegerField(default=0)
    # The database's clock by default (claim and tick compare with it), never a host's.
    run_after = models.DateTimeField(db_default=Now())
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    locked_by = models.CharField(max_length=128, blank=True)
    cancel_requested = models.BooleanField(default=False)
    offered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    errors = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    batch_id = models.UUIDField(default=uuid.uuid4)
    dedupe_key = models.CharField(max_length=200, null=True, blank=True)
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Serves tick() and run_due_jobs(): "claimable jobs whose run_after has passed",
            # most urgent first (priority, then run_after).
            models.Index(
                fields=["priority", "run_after"],
                name="job_due_idx",
                condition=Q(status__in=["queued", "retrying"]),
            ),
            # Serves the hand-off pump (jobs/pump.py), every second: "claimable jobs never
            # offered to the broker" (retries, later jobs, failed hand-offs); a small index.
            models.Index(
                fields=["priority", "run_after"],
                name="job_unoffered_idx",
                condition=Q(status__in=["queued", "retrying"], offered_at__isnull=True),
            ),
            # Serves tick(): "running jobs whose lease has expired".
            models.Index(
                fields=["lease_expires_at"],
                name="job_lease_idx",
                condition=Q(status="running"),
            ),
            # Serve the admin's status/kind filters on a large table, newest first.
            models.Index(fields=["status", "-id"], name="job_status_idx"),
            models.Index(fields=["kind", "-id"], name="job_kind_idx"),
            models.Index(fields=["user", "-id"], name="job_user_idx"),
            models.Index(fields=["batch_id"], name="job_batch_idx"),
            # Serve the pipeline page, pipeline_status and /metrics (jobs/status.py,
            # jobs/metrics.py) with index(-only) scans at millions of rows:
            # "jobs created since T, by kind and status",
            models.Index(fields=["created_at"], include=["kind", "status"], name="job_created_idx"),
            # "jobs finished since T, by hour, kind and status" (throughput, failure groups,
            # failure rate, the metrics fold). Waiting jobs per kind read job_due_idx, running
            # ones job_status_idx: both sets are small.
            models.Index(
                fields=["finished_at"],
                include=["kind", "status", "started_at"],
                name="job_finished_idx",
                condition=Q(finished_at__isnull=False),
            ),
        ]
        constraints = [
            # Per-user lanes: one active job per dedupe key.
            models.UniqueConstraint(
                fields=["dedupe_key"],
                condition=Q(status__in=["queued", "running", "retrying"]),
                name="job_active_dedupe_key_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}#{self.pk} ({self.status})"

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None
