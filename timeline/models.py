"""Per-contact timeline events written from interactions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Case, F, Value, When


class TimelineEventType(models.TextChoices):
    EMAIL_RECEIVED = "email_received", "e-mail received"
    EMAIL_SENT = "email_sent", "e-mail sent"
    MEETING = "meeting", "meeting"
    MEETING_CANCELLED = "meeting_cancelled", "meeting cancelled"


class TimelineEvent(models.Model):
    """One thing that happened with a contact: one per (interaction, contact, type)."""

    # No single-column indexes on user and interaction: the indexes below lead with them
    # (fewer indexes to maintain on every write_timeline insert).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    contact = models.ForeignKey(
        "contacts.Contact", on_delete=models.CASCADE, related_name="timeline_events"
    )
    interaction = models.ForeignKey(
        "jobs.Interaction", on_delete=models.CASCADE, related_name="timeline_events", db_index=False
    )
    event_type = models.CharField(max_length=32, choices=TimelineEventType.choices)
    occurred_at = models.DateTimeField()
    title = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # One event per (interaction, contact, type), where a meeting and its cancellation
            # are the same event: a cancelled meeting updates its `meeting` event in place.
            # write_timeline's upsert names this expression as its conflict target.
            models.UniqueConstraint(
                F("interaction"),
                F("contact"),
                Case(
                    When(event_type=TimelineEventType.MEETING_CANCELLED, then=Value("meeting")),
                    default=F("event_type"),
                ),
                name="timeline_event_uniq",
            )
        ]
        indexes = [
            # contact_timeline: keyset pagination on (occurred_at, id), newest first.
            models.Index(
                fields=["user", "contact", "-occurred_at", "-id"], name="timeline_contact_idx"
            ),
            models.Index(fields=["user", "event_type"], name="timeline_type_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type}: {self.title[:40]}"
