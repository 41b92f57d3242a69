"""Provider payloads exactly as fetched; never lost, replayable through normalization."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

# The longest provider id stored, in characters and in UTF-8 bytes: a source id (Calendar:
# "<calendar id>/<event id>", event ids up to 1,024 characters plus an instance's "_<start>")
# and an interaction's thread id (a recurring event's series id). It keeps every unique btree
# entry (user, provider, id) under PostgreSQL's ~2,700-byte limit for an index row; an item
# whose id is longer is not stored, and fails alone (the Calendar sync records it).
SOURCE_ID_MAX_LENGTH = 2048


def source_id_fits(value: str) -> bool:
    """Whether a provider id can be stored (at most SOURCE_ID_MAX_LENGTH UTF-8 bytes)."""
    return len(value) <= SOURCE_ID_MAX_LENGTH and (
        value.isascii() or len(value.encode("utf-8", "surrogatepass")) <= SOURCE_ID_MAX_LENGTH
    )


def source_id_too_long(value: str) -> str:
    """Why an id that does not fit is not stored (the recorded message)."""
    size = len(value.encode("utf-8", "surrogatepass"))
    return (
        f"id too long to store: {len(value)} characters, {size} bytes "
        f"(limit {SOURCE_ID_MAX_LENGTH} bytes); it starts {value[:80]!r}"
    )


class NormalizationStatus(models.TextChoices):
    PENDING = "pending", "pending"
    NORMALIZED = "normalized", "normalized"
    FAILED = "failed", "failed"


class RawEventQuerySet(models.QuerySet["RawEvent"]):
    def failed(self) -> RawEventQuerySet:
        """The raw events that failed to normalize (served by raw_event_error_idx: a failure
        always records its error)."""
        return self.filter(status=NormalizationStatus.FAILED).exclude(error="")


class RawEvent(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(
        "jobs.GoogleAccount", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    provider = models.CharField(max_length=16)  # "gmail" | "calendar"
    source_id = models.CharField(max_length=SOURCE_ID_MAX_LENGTH)
    occurred_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField()
    batch_id = models.UUIDField(default=uuid.uuid4)
    status = models.CharField(
        max_length=16, choices=NormalizationStatus.choices, default=NormalizationStatus.PENDING
    )
    error = models.TextField(blank=True)
    fetched_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RawEventQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "provider", "source_id"], name="raw_event_user_provider_source_uniq"
            )
        ]
        indexes = [
            # Serves the window fallback: "latest occurred_at for this user and provider".
            models.Index(fields=["user", "provider", "-occurred_at"], name="raw_event_recent_idx"),
            # Serves the window start of one account: "its latest occurred_at for a provider".
            models.Index(
                fields=["account", "provider", "-occurred_at"], name="raw_event_account_recent_idx"
            ),
            # Serves the failed ones (RawEvent.objects.failed(): status failed, an error recorded).
            # Its predicate reads `error`, not `status`: normalization's outcome update (status
            # pending -> normalized, error '' -> '') then changes no indexed column and stays a
            # HOT update (see PendingRawEvent).
            models.Index(
                fields=["user", "provider"],
                name="raw_event_error_idx",
                condition=~Q(error=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.source_id}"


class PendingRawEvent(models.Model):
    """Normalization's work list: one row per raw event waiting to be normalized.

    Triggers on the raw-event table (migration 0015) keep it in step with `status`: a raw event
    written `pending` (a sync's insert or changed payload, "normalize again") gets its row, or
    has it moved to its new batch; one updated to anything else (normalization's outcome) loses
    it; a deleted one takes it along (the cascade). The claims, "is anything pending", the
    counts and the sweep read this narrow table instead of a partial index on `status`: with
    `status` in no index (and the raw-event table's fillfactor at 50), the outcome update of a
    raw event is a HOT update that writes none of its seven indexes.
    """

    raw_event = models.OneToOneField(
        RawEvent, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    # the raw event's, copied by the trigger; the claims' index leads with it
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    provider = models.CharField(max_length=16)
    batch_id = models.UUIDField()

    class Meta:
        indexes = [
            # Serves normalization's claims: "pending rows of this user's batch".
            models.Index(fields=["user", "provider", "batch_id"], name="pending_raw_event_idx"),
        ]

    def __str__(self) -> str:
        return f"pending raw event {self.raw_event_id}"
