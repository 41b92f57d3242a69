"""Provider payloads exactly as fetched; never lost, replayable through normalization."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class NormalizationStatus(models.TextChoices):
    PENDING = "pending", "pending"
    NORMALIZED = "normalized", "normalized"
    FAILED = "failed", "failed"


class RawEvent(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(
        "jobs.GoogleAccount", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    provider = models.CharField(max_length=16)  # "gmail" | "calendar"
    source_id = models.CharField(max_length=512)
    occurred_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField()
    batch_id = models.UUIDField(default=uuid.uuid4)
    status = models.CharField(
        max_length=16, choices=NormalizationStatus.choices, default=NormalizationStatus.PENDING
    )
    error = models.TextField(blank=True)
    fetched_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "provider", "source_id"], name="raw_event_user_provider_source_uniq"
            )
        ]
        indexes = [
            # Serves normalization: "pending rows of this user's batch".
            models.Index(
                fields=["user", "provider", "batch_id"],
                name="raw_event_pending_idx",
                condition=Q(status="pending"),
            ),
            # Serves the window fallback: "latest occurred_at for this user and provider".
            models.Index(fields=["user", "provider", "-occurred_at"], name="raw_event_recent_idx"),
            # Serves the window start of one account: "its latest occurred_at for a provider".
            models.Index(
                fields=["account", "provider", "-occurred_at"], name="raw_event_account_recent_idx"
            ),
            models.Index(
                fields=["user", "provider"],
                name="raw_event_failed_idx",
                condition=Q(status="failed"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.source_id}"
