"""Insights: explainable findings about a user's relationships, derived after the rollups.

One row per (user, fingerprint). The fingerprint is a stable hash of the kind, the subject and
the period or episode the insight concerns (insights/rules/base.py), so a rerun updates the row
instead of adding one, and the status a person gave it (seen, dismissed, done) stays. A
materially new situation (a new silence, a new message in a thread, a rescheduled meeting, a new
week) has a new fingerprint, hence a new row that starts as `new`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class InsightKind(models.TextChoices):
    RELATIONSHIP_STRENGTH = "relationship_strength", "relationship strength"
    GOING_COLD = "going_cold", "going cold"
    AWAITING_REPLY = "awaiting_reply", "awaiting your reply"
    MEETING_PREP = "meeting_prep", "meeting prep"
    WEEKLY_DIGEST = "weekly_digest", "weekly digest"


class InsightStatus(models.TextChoices):
    NEW = "new", "new"
    SEEN = "seen", "seen"
    DISMISSED = "dismissed", "dismissed"
    DONE = "done", "done"


# Statuses a person still has to look at; the others are their decision, which a rerun keeps.
OPEN_STATUSES = (InsightStatus.NEW, InsightStatus.SEEN)


class SummarySource(models.TextChoices):
    HEURISTIC = "heuristic", "heuristic"
    LLM = "llm", "LLM"


class Insight(models.Model):
    """A finding with the numbers and interaction ids it was derived from (`evidence`)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=32, choices=InsightKind.choices)
    # The person it is about; None for a user-level insight (the digest, a meeting with several
    # attendees). A contact merge moves it to the target, an unmerge back (contacts.merge_hooks).
    contact = models.ForeignKey(
        "contacts.Contact",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="insights",
        db_index=False,
    )
    # sha256 hex of [kind, subject, period] (insights.rules.base.fingerprint).
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=InsightStatus.choices, default=InsightStatus.NEW
    )
    title = models.CharField(max_length=300)
    # What is shown: the LLM's phrasing when it succeeded for the current content, else the
    # heuristic text.
    summary = models.TextField()
    # The rule's own text, always the latest (what a failed or absent LLM falls back to).
    heuristic_summary = models.TextField()
    summary_source = models.CharField(
        max_length=16, choices=SummarySource.choices, default=SummarySource.HEURISTIC
    )
    # Why the heuristic text stands where the LLM would phrase it: "not_configured", "timeout",
    # "invalid_output: ...", "error: ..."; None when the LLM phrased it, when the kind is not
    # phrased by the LLM, or while a phrasing is pending.
    llm_fallback_reason = models.TextField(null=True, blank=True)
    # The numbers and interaction ids the insight was derived from (per kind, see the rules).
    evidence = models.JSONField(default=dict)
    # Questions still open: [{"text", "interaction_id"}], the rule's or the LLM's.
    open_questions = models.JSONField(default=list, blank=True)
    # 0..100, higher first (each rule documents its own scale).
    score = models.FloatField(default=0)
    # Hash of the rule's output (title, summary, evidence, score, contact): a rerun that finds
    # the same leaves the row alone.
    content_hash = models.CharField(max_length=64)
    # Hash of the material content the LLM phrases (insights.rules.base.Candidate.basis); the
    # LLM is asked again only when it changes.
    basis_hash = models.CharField(max_length=64)
    # basis_hash of the LLM's last definitive answer (phrased, or invalid output); "" if none.
    llm_basis_hash = models.CharField(max_length=64, blank=True, default="")
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "fingerprint"], name="insight_fingerprint_uniq")
        ]
        indexes = [
            # A user's list by status and kind, best first (command, selectors, admin filters).
            models.Index(
                fields=["user", "status", "kind", "-score"], name="insight_user_status_idx"
            ),
            # The admin's list across users, newest first, filtered by kind or status.
            models.Index(fields=["kind", "status", "-updated_at"], name="insight_kind_status_idx"),
            # A contact's insights (the stale pass of the contacts phase, merge hooks).
            models.Index(
                fields=["contact", "kind"],
                name="insight_contact_idx",
                condition=Q(contact__isnull=False),
            ),
            # The expiry sweep.
            models.Index(fields=["user", "expires_at"], name="insight_expiry_idx"),
        ]

    def __str__(self) -> str:
        return self.title
