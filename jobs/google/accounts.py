"""Services for connected Google accounts: connect (tokens encrypted), disconnect, needs-reauth."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import httplib2
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from googleapiclient.discovery import Resource

from jobs.config import get_config
from jobs.google.client import execute, gmail_service
from jobs.google.credentials import revoke_uri
from jobs.google.push import push_stop_account
from jobs.google.tokens import (
    TokenDecryptionError,
    decrypt_token,
    encrypt_token,
    is_current,
    rotate,
)
from jobs.models import GoogleAccount, GoogleAccountStatus, PushChannel
from jobs.models.google_account import TOKEN_FIELDS

logger = logging.getLogger(__name__)


def normalize_addresses(email: str, addresses: Iterable[str]) -> list[str]:
    """The account's own address first, then its aliases: lowercased, stripped, no duplicates."""
    seen: dict[str, None] = {email.strip().lower(): None}
    for address in addresses:
        cleaned = (address or "").strip().lower()
        if cleaned:
            seen.setdefault(cleaned, None)
    return list(seen)


def google_account_connect(
    *,
    user: AbstractBaseUser,
    email: str,
    refresh_token: str,
    access_token: str = "",
    expires_at: datetime | None = None,
    scopes: Iterable[str] = (),
    addresses: Iterable[str] = (),
) -> GoogleAccount:
    """Create or update the user's account for `email`, tokens encrypted, status active.

    Google omits the refresh token when a user re-consents without prompt=consent; the stored
    one is kept then. With neither, ValueError: the account could not sync.
    """
    email = email.strip().lower()
    with transaction.atomic():
        account = (
            GoogleAccount.objects.select_for_update().filter(user_id=user.pk, email=email).first()
        )
        if account is None:
            account = GoogleAccount(user_id=user.pk, email=email)
        if refresh_token:
            account.refresh_token_encrypted = encrypt_token(refresh_token)
        elif not account.refresh_token_encrypted:
            raise ValueError(f"no refresh token for {email}: connect with offline access")
        account.access_token_encrypted = encrypt_token(access_token) if access_token else ""
        account.access_token_expires_at = expires_at if access_token else None
        account.scopes = sorted(set(scopes))
        account.addresses = normalize_addresses(email, addresses)
        account.status = GoogleAccountStatus.ACTIVE
        account.last_error = ""
        account.save()
    logger.info("Google account %s connected for user %s", account.pk, account.user_id)
    return account


def google_account_record_offline(
    *, user: AbstractBaseUser, addresses: Sequence[str]
) -> GoogleAccount:
    """The user's account for addresses[0], for an import without Google access.

    A missing account is created `offline`: no tokens, never synced, refreshed or asked to
    re-authorise; its addresses (the first, then the aliases) decide the direction of imported
    mail. An offline account that exists gains the aliases given. An account connected through
    OAuth is returned unchanged: Google's send-as list is the truth for its addresses.
    """
    if not addresses:
        raise ValueError("an offline account needs at least one address")
    email = addresses[0].strip().lower()
    with transaction.atomic():
        account = (
            GoogleAccount.objects.select_for_update().filter(user_id=user.pk, email=email).first()
        )
        if account is None:
            account = GoogleAccount.objects.create(
                user_id=user.pk,
                email=email,
                status=GoogleAccountStatus.OFFLINE,
                addresses=normalize_addresses(email, addresses),
            )
            logger.info("offline Google account %s recorded for user %s", account.pk, user.pk)
        elif account.status == GoogleAccountStatus.OFFLINE:
            merged = normalize_addresses(email, [*account.addresses, *addresses])
            if merged != account.addresses:
                account.addresses = merged
                account.save(update_fields=["addresses", "updated_at"])
    return account


def google_account_refresh_addresses(
    account: GoogleAccount, *, service: Resource | None = None
) -> list[str]:
    """Read the account's send-as addresses from Gmail, store them on the account, return them.

    users.settings.sendAs.list (1 quota unit) through jobs.google.client.execute, so it is paced
    and its errors are the client's (TransientError, PermanentError). Aliases whose verification
    is pending are left out: Gmail does not send from them. The account's own address comes first.
    Syncs call this at each window pass, so mail from an alias added after connecting is
    recognised as the user's own; `service` is the run's Gmail service, if it has one.
    """
    service = service or gmail_service(account)
    response = execute(service.users().settings().sendAs().list(userId="me"), account=account)
    aliases = [
        alias.get("sendAsEmail") or ""
        for alias in (response or {}).get("sendAs", [])
        if alias.get("verificationStatus", "accepted") == "accepted"
    ]
    addresses = normalize_addresses(account.email, aliases)
    if addresses != account.addresses:
        GoogleAccount.objects.filter(pk=account.pk).update(
            addresses=addresses, updated_at=timezone.now()
        )
        account.addresses = addresses
        logger.info("Google account %s has %d send-as addresses", account.pk, len(addresses))
    return addresses


def google_account_disconnect(*, account: GoogleAccount) -> GoogleAccount:
    """Stop its push subscriptions and revoke the grant at Google (best effort), forget the
    tokens, mark the account revoked."""
    # While the tokens still work: users.stop and channels.stop need them.
    push_stop_account(account=account)
    with transaction.atomic():
        locked = GoogleAccount.objects.select_for_update().get(pk=account.pk)
        token = decrypt_token(locked.refresh_token_encrypted) or decrypt_token(
            locked.access_token_encrypted
        )
        locked.refresh_token_encrypted = ""
        locked.access_token_encrypted = ""
        locked.access_token_expires_at = None
        locked.status = GoogleAccountStatus.REVOKED
        locked.last_error = ""
        locked.save()
    # After the commit: the tokens are gone locally whatever Google answers.
    if token:
        revoke_at_google(token=token, account_id=locked.pk)
    logger.info("Google account %s disconnected", locked.pk)
    return locked


def revoke_at_google(*, token: str, account_id: int | None = None) -> bool:
    """POST the token to the revoke endpoint; False (logged, without the token) on any failure."""
    http = httplib2.Http(timeout=get_config().google_request_timeout_s)
    try:
        response, _ = http.request(
            revoke_uri(),
            method="POST",
            body=urlencode({"token": token}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    except (OSError, httplib2.HttpLib2Error) as exc:
        logger.warning("revoking Google account %s failed: %s", account_id, type(exc).__name__)
        return False
    if response.status >= 300:
        logger.warning("revoking Google account %s: HTTP %s", account_id, response.status)
        return False
    return True


def google_account_mark_needs_reauth(*, account: GoogleAccount, reason: str) -> None:
    """Stop syncing the account until its user reconnects; `reason` must not contain tokens."""
    GoogleAccount.objects.filter(pk=account.pk).update(
        status=GoogleAccountStatus.NEEDS_REAUTH,
        access_token_encrypted="",
        access_token_expires_at=None,
        last_error=reason[:2000],
        updated_at=timezone.now(),
    )
    account.status = GoogleAccountStatus.NEEDS_REAUTH
    account.access_token_encrypted = ""
    account.access_token_expires_at = None
    account.last_error = reason[:2000]


@dataclass(frozen=True, slots=True)
class RotationResult:
    accounts: int = 0
    rotated: int = 0
    current: int = 0


def google_account_tokens_rotate(*, chunk_size: int = 500) -> RotationResult:
    """Re-encrypt every stored token (OAuth tokens, push channel tokens) under the first
    configured key, chunk by chunk.

    Rows are locked per chunk (SELECT ... FOR UPDATE) so a concurrent refresh is not lost;
    tokens already under the first key are left alone, so a second run changes nothing.
    Raises TokenDecryptionError naming the account when a token matches no key.
    """
    accounts = rotated = current = 0
    last_pk = 0
    while True:
        with transaction.atomic():
            chunk = list(
                GoogleAccount.objects.select_for_update()
                .filter(pk__gt=last_pk)
                .order_by("pk")
                .only("pk", *TOKEN_FIELDS)[:chunk_size]
            )
            if not chunk:
                break
            changed = []
            for account in chunk:
                accounts += 1
                touched = False
                for name in TOKEN_FIELDS:
                    ciphertext = getattr(account, name)
                    if not ciphertext:
                        continue
                    try:
                        if is_current(ciphertext):
                            current += 1
                            continue
                        setattr(account, name, rotate(ciphertext))
                    except TokenDecryptionError:
                        raise TokenDecryptionError(
                            f"Google account {account.pk}: its {name} matches none of the keys"
                        ) from None
                    rotated += 1
                    touched = True
                if touched:
                    changed.append(account)
            if changed:
                GoogleAccount.objects.bulk_update(changed, TOKEN_FIELDS)
            last_pk = chunk[-1].pk
    channels = _channel_tokens_rotate(chunk_size=chunk_size)
    return RotationResult(
        accounts=accounts, rotated=rotated + channels.rotated, current=current + channels.current
    )


def _channel_tokens_rotate(*, chunk_size: int) -> RotationResult:
    """The same for the calendar push channels' tokens (jobs.models.PushChannel)."""
    rotated = current = 0
    last_pk = 0
    while True:
        with transaction.atomic():
            chunk = list(
                PushChannel.objects.select_for_update()
                .filter(pk__gt=last_pk)
                .exclude(token_encrypted="")
                .order_by("pk")
                .only("pk", "token_encrypted")[:chunk_size]
            )
            if not chunk:
                break
            changed = []
            for channel in chunk:
                try:
                    if is_current(channel.token_encrypted):
                        current += 1
                        continue
                    channel.token_encrypted = rotate(channel.token_encrypted)
                except TokenDecryptionError:
                    raise TokenDecryptionError(
                        f"push channel {channel.pk}: its token matches none of the keys"
                    ) from None
                rotated += 1
                changed.append(channel)
            if changed:
                PushChannel.objects.bulk_update(changed, ["token_encrypted"])
            last_pk = chunk[-1].pk
    return RotationResult(rotated=rotated, current=current)
