"""A user's Google account: scopes, status and encrypted OAuth tokens (none when offline)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

# The columns holding token ciphertexts: rotated together, never shown.
TOKEN_FIELDS = ("refresh_token_encrypted", "access_token_encrypted")


class GoogleAccountStatus(models.TextChoices):
    ACTIVE = "active", "active"
    NEEDS_REAUTH = "needs_reauth", "needs re-authorisation"
    REVOKED = "revoked", "revoked"
    # Recorded by an import for a user without Google access (Takeout files only): no tokens,
    # never synced nor refreshed, never needing re-authorisation; its addresses give direction.
    OFFLINE = "offline", "offline (imports only)"


class GoogleAccount(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="google_accounts"
    )
    # Lowercased; indexed for push notifications, which name the mailbox, not the user.
    email = models.EmailField(db_index=True)
    scopes = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=16, choices=GoogleAccountStatus.choices, default=GoogleAccountStatus.ACTIVE
    )
    # Fernet ciphertexts (jobs.google.tokens); never the tokens themselves.
    refresh_token_encrypted = models.TextField(blank=True)
    access_token_encrypted = models.TextField(blank=True)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    # The account's own address plus its Gmail send-as aliases, lowercased: decides direction.
    addresses = models.JSONField(default=list, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "email"], name="google_account_user_email_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.status})"

    @property
    def has_refresh_token(self) -> bool:
        return bool(self.refresh_token_encrypted)

    @property
    def own_addresses(self) -> frozenset[str]:
        return frozenset({self.email.lower(), *(a.lower() for a in self.addresses)})
