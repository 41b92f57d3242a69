"""Reconciliation runs: what the provider holds against what is stored, per account and provider."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from jobs.models.sync_state import Provider


class ReconcileStatus(models.TextChoices):
    # No gap: every item the provider lists in the window is stored.
    OK = "ok", "no gap"
    # A gap was found and not fixed (a read-only run, or fixing is turned off).
    GAP = "gap", "gap found"
    # A gap was found and every missing item was fetched (or turned out to be excluded).
    FIXED = "fixed", "gap fixed"
    # Stopped before the end (deadline, per-run cap, cancel): the job continues in a new run.
    PARTIAL = "partial", "partial (continues)"
    # Nothing compared: the account's first sync of the provider has not finished yet.
    SKIPPED = "skipped", "skipped"
    FAILED = "failed", "failed"


class ReconcileRun(models.Model):
    """One reconciliation of one account and provider (jobs.sync.reconcile).

    Counts, over the window the sync covers: `provider_count` ids the provider lists,
    `stored_count` rows stored for it in the window (Gmail: this account's; Calendar: the user's
    rows of the calendars this account syncs, whichever account stored them), `missing_count`
    listed but not stored (the gap), `fetched_count` of those fetched and stored by this run,
    `extra_count` stored but no longer listed (reported, never deleted), `elsewhere_count` listed
    but stored under another account of the same user (or none: a deleted account's rows),
    `in_flight_count` listed and already queued by the account's sync (not a gap),
    `failed_count` missing items whose fetch failed.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(
        "jobs.GoogleAccount", on_delete=models.CASCADE, related_name="reconcile_runs"
    )
    provider = models.CharField(max_length=16, choices=Provider.choices)
    job = models.ForeignKey(
        "jobs.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    fix = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=ReconcileStatus.choices)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    provider_count = models.PositiveIntegerField(default=0)
    stored_count = models.PositiveIntegerField(default=0)
    missing_count = models.PositiveIntegerField(default=0)
    fetched_count = models.PositiveIntegerField(default=0)
    extra_count = models.PositiveIntegerField(default=0)
    elsewhere_count = models.PositiveIntegerField(default=0)
    in_flight_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    # Up to RECONCILE_SAMPLE ids each (Gmail message ids; Calendar "<calendar id>/<event id>").
    missing_sample = models.JSONField(default=list, blank=True)
    extra_sample = models.JSONField(default=list, blank=True)
    # Why it was skipped, what failed, or what stopped it.
    detail = models.TextField(blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The pipeline page's "latest run per account and provider", the schedule's "when
            # was this account last reconciled", the admin's per-account list.
            models.Index(fields=["account", "provider", "-id"], name="reconcile_run_latest_idx"),
            models.Index(fields=["user", "-id"], name="reconcile_run_user_idx"),
            # The pipeline page's "runs of the last days".
            models.Index(fields=["started_at"], name="reconcile_run_started_idx"),
        ]

    def __str__(self) -> str:
        return f"reconcile {self.provider} of account {self.account_id} ({self.status})"

    @property
    def has_gap(self) -> bool:
        return self.missing_count > self.fetched_count or self.extra_count > 0
