"""Where each provider sync left off: cursors, page tokens and ids still to fetch."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Provider(models.TextChoices):
    GMAIL = "gmail", "Gmail"
    CALENDAR = "calendar", "Google Calendar"


class SyncState(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(
        "jobs.GoogleAccount", on_delete=models.CASCADE, related_name="sync_states"
    )
    provider = models.CharField(max_length=16, choices=Provider.choices)
    # "" for Gmail; the calendar id for Calendar.
    resource_id = models.CharField(max_length=255, blank=True, default="")
    # Gmail historyId or Calendar syncToken, once a full pass has finished. Tokens are text:
    # Google documents no length for them, and no index reads these columns.
    cursor = models.TextField(blank=True)
    # Continuation of an unfinished pass: a list/events page token, ids listed but not fetched,
    # and the cursor to adopt when the pass completes.
    page_token = models.TextField(blank=True)
    pending_ids = models.JSONField(default=list, blank=True)
    pass_cursor = models.TextField(blank=True)
    # the listing's parameters as JSON (Calendar: {"syncToken": ...} or the window; Gmail: q)
    pass_query = models.TextField(blank=True)
    # Progress of the open pass (the pipeline page's "listed vs fetched"): ids listed and
    # items fetched since the pass started (Gmail; Calendar lists and fetches in one call).
    pass_listed = models.PositiveIntegerField(default=0)
    pass_fetched = models.PositiveIntegerField(default=0)
    # Items that failed permanently and are skipped: {item id (message id; calendar id): {
    # "error", "attempts", "firstFailedAt", "lastFailedAt", "retryAt" (ISO 8601; null once
    # given up after sync_failed_max_attempts)}}. Retried every sync_failed_retry_every_s.
    failures = models.JSONField(default=dict, blank=True)
    # The backfill (older than the first window, back to backfill_horizon_days), on the main
    # row of an account and provider: everything from backfill_until to now is covered (the
    # oldest date the backfill has reached; null once done with no horizon: everything), and
    # when it finished (a raised horizon reopens it). Its listing runs on a row of
    # its own (Gmail: resource_id "backfill"; Calendar: "backfill:<calendar id>").
    backfill_until = models.DateTimeField(null=True, blank=True)
    backfill_done_at = models.DateTimeField(null=True, blank=True)
    last_full_sync_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "provider", "resource_id"], name="sync_state_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.resource_id or '-'} for account {self.account_id}"
