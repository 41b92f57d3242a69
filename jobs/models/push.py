"""Push subscriptions at Google: an account's Gmail watch and its calendars' notification
channels, with what arrived through them (jobs.google.push opens and stops them,
jobs.sync.push turns notifications into syncs)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from jobs.models.sync_state import Provider


class PushChannelStatus(models.TextChoices):
    # The watch call is under way; notifications on the channel are already accepted (Google
    # may send them before its answer arrives).
    PENDING = "pending", "pending"
    ACTIVE = "active", "active"
    # The last watch call failed (last_error says why); the renewal schedule tries again.
    FAILED = "failed", "failed"


class PushChannel(models.Model):
    """One push subscription: the account's Gmail watch (provider gmail, resource_id ""), or a
    notification channel on one calendar (resource_id = the calendar id).

    A Gmail watch is renewed in place. A calendar channel cannot be extended: renewal opens a
    new channel (a new row, pending until Google confirms it), then stops the old one, so for a
    moment a calendar has two rows and notifications on either are accepted.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(
        "jobs.GoogleAccount", on_delete=models.CASCADE, related_name="push_channels"
    )
    provider = models.CharField(max_length=16, choices=Provider.choices)
    resource_id = models.CharField(max_length=255, blank=True, default="")
    # Ours (a random uuid): X-Goog-Channel-ID of a calendar channel's notifications.
    channel_id = models.CharField(max_length=64, unique=True)
    # Calendar: the channel's secret (X-Goog-Channel-Token), Fernet-encrypted like OAuth tokens.
    token_encrypted = models.TextField(blank=True)
    # Calendar: Google's id of the watched resource (X-Goog-Resource-ID; channels.stop needs it).
    google_resource_id = models.CharField(max_length=255, blank=True)
    # Gmail: the Pub/Sub topic and label filter the watch was made with; Calendar: the address
    # notifications are sent to. A change in the configuration renews the watch.
    address = models.CharField(max_length=512, blank=True)
    label_ids = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=16, choices=PushChannelStatus.choices, default=PushChannelStatus.PENDING
    )
    watched_at = models.DateTimeField(null=True, blank=True)  # Google first confirmed it
    renewed_at = models.DateTimeField(null=True, blank=True)  # the last successful watch call
    expires_at = models.DateTimeField(null=True, blank=True)
    # Gmail: the mailbox's historyId when the watch started; changes after it are announced.
    history_id = models.BigIntegerField(null=True, blank=True)
    # What arrived: the last accepted notification, how many, and (Gmail) the newest historyId.
    notified_at = models.DateTimeField(null=True, blank=True)
    notifications = models.PositiveBigIntegerField(default=0)
    notified_history_id = models.BigIntegerField(null=True, blank=True)
    # A sync found a change no notification had announced (Gmail: up to this historyId); a
    # notification that covers it clears both. Older than push_missed_grace_s: push is failing.
    unannounced_at = models.DateTimeField(null=True, blank=True)
    unannounced_history_id = models.BigIntegerField(null=True, blank=True)
    # A notification arrived while the account's sync was running (it may have read past the
    # change already): the run's end starts one more sync, then clears it.
    follow_up = models.BooleanField(default=False)
    # The sync run (job id and attempt) that last looked for notifications it must follow up
    # and found none: a notification arriving after that look cannot count on that run.
    checked_job_id = models.BigIntegerField(null=True, blank=True)
    checked_attempt = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # One Gmail watch per account (renewed in place).
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(provider=Provider.GMAIL),
                name="push_channel_one_gmail_watch",
            )
        ]
        indexes = [models.Index(fields=["account", "provider"], name="push_channel_account_idx")]

    def __str__(self) -> str:
        what = "Gmail watch" if self.provider == Provider.GMAIL else f"channel {self.resource_id}"
        return f"{what} of account {self.account_id} ({self.status})"
