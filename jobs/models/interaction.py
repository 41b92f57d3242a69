"""Interactions: e-mails and meetings normalized from raw events, one per provider item."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from jobs.models.raw_event import SOURCE_ID_MAX_LENGTH


class InteractionKind(models.TextChoices):
    EMAIL_INBOUND = "email_inbound", "e-mail received"
    EMAIL_OUTBOUND = "email_outbound", "e-mail sent"
    MEETING = "meeting", "meeting"


class Interaction(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=16)
    source_id = models.CharField(max_length=SOURCE_ID_MAX_LENGTH)
    kind = models.CharField(max_length=32, choices=InteractionKind.choices)
    occurred_at = models.DateTimeField()
    occurred_at_estimated = models.BooleanField(default=False)
    subject = models.TextField(blank=True)
    body_text = models.TextField(blank=True)
    # Gmail's threadId; a Calendar instance's recurringEventId (up to 1,024 characters).
    thread_id = models.CharField(max_length=SOURCE_ID_MAX_LENGTH, blank=True)
    direction = models.CharField(max_length=16, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "source", "source_id"], name="interaction_user_source_uniq"
            )
        ]
        indexes = [
            models.Index(fields=["user", "-occurred_at"], name="interaction_recent_idx"),
            models.Index(fields=["user", "thread_id"], name="interaction_thread_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject[:40]!r}"
