"""OAuth credentials for a GoogleAccount, refreshed under a row lock so workers never race."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import google_auth_httplib2
import httplib2
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from google.auth import exceptions as auth_exceptions
from google.auth.transport import Request
from google.oauth2.credentials import Credentials

from jobs.config import get_config
from jobs.errors import PermanentError, TransientError
from jobs.google.tokens import decrypt_token, encrypt_token
from jobs.models import GoogleAccount, GoogleAccountStatus

logger = logging.getLogger(__name__)

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_REVOKE_URI = "https://oauth2.googleapis.com/revoke"
# Refresh this long before Google's expiry, so a token never dies in the middle of a chunk.
REFRESH_AHEAD = timedelta(minutes=5)
INVALID_GRANT_MESSAGE = (
    "Google refused the refresh token (invalid_grant: revoked or expired); reconnect the account"
)


def _endpoint(setting: str, path: str, google_default: str) -> str:
    explicit = getattr(settings, setting, "")
    if explicit:
        return explicit
    root = getattr(settings, "GOOGLE_API_ROOT", "")
    return f"{root.rstrip('/')}/{path}" if root else google_default


def token_uri() -> str:
    """settings.GOOGLE_TOKEN_URI, else GOOGLE_API_ROOT + "token", else Google's."""
    return _endpoint("GOOGLE_TOKEN_URI", "token", GOOGLE_TOKEN_URI)


def auth_uri() -> str:
    """settings.GOOGLE_AUTH_URI, else GOOGLE_API_ROOT + "o/oauth2/auth", else Google's."""
    return _endpoint("GOOGLE_AUTH_URI", "o/oauth2/auth", GOOGLE_AUTH_URI)


def revoke_uri() -> str:
    """settings.GOOGLE_REVOKE_URI, else GOOGLE_API_ROOT + "revoke", else Google's."""
    return _endpoint("GOOGLE_REVOKE_URI", "revoke", GOOGLE_REVOKE_URI)


def http_request() -> Request:
    """A google-auth transport over httplib2 with the configured timeout."""
    return google_auth_httplib2.Request(
        httplib2.Http(timeout=get_config().google_request_timeout_s)
    )


@dataclass
class _AccountRefresher:
    """google-auth's refresh_handler: every refresh goes through `locked_access_token`.

    The Credentials carry no refresh token, so neither google-auth nor the API client can refresh
    behind the lock (AuthorizedHttp on a 401, BatchHttpRequest on a part's 401 both end here).
    """

    account_id: int
    current: str | None = None

    def __call__(self, request: Request, scopes: Any = None) -> tuple[str, datetime]:
        # A refresh asked for while we hold `current` means Google rejected it (or it expired):
        # never hand the same token back.
        token, expiry = locked_access_token(self.account_id, request=request, reject=self.current)
        self.current = token
        return token, expiry


def get_credentials(account: GoogleAccount) -> Credentials:
    """Credentials with a fresh access token for `account` (refreshed if < 5 min are left).

    Raises PermanentError when the account needs re-authorisation, TransientError when Google's
    token endpoint could not be reached.
    """
    refresher = _AccountRefresher(account.pk)
    token, expiry = refresher(http_request())
    return Credentials(
        token=token,
        expiry=expiry,
        token_uri=token_uri(),
        client_id=settings.GOOGLE_CLIENT_ID,
        client_secret=settings.GOOGLE_CLIENT_SECRET,
        scopes=list(account.scopes or ()) or None,
        refresh_handler=refresher,
    )


def locked_access_token(
    account_id: int, *, request: Request, reject: str | None = None
) -> tuple[str, datetime]:
    """(access token, naive-UTC expiry) for the account, refreshing under SELECT ... FOR UPDATE.

    The row is re-read after the lock: a worker that waited for another one's refresh finds the
    new token and uses it instead of refreshing again.
    """
    failure: Exception | None = None
    with transaction.atomic():
        account = GoogleAccount.objects.select_for_update().get(pk=account_id)
        if account.status != GoogleAccountStatus.ACTIVE or not account.refresh_token_encrypted:
            raise PermanentError(
                f"Google account {account.pk} is {account.status}; reconnect it to sync again"
            )
        stored = decrypt_token(account.access_token_encrypted)
        expires_at = account.access_token_expires_at
        if (
            stored
            and stored != reject
            and expires_at is not None
            and expires_at - timezone.now() > REFRESH_AHEAD
        ):
            return stored, _naive_utc(expires_at)
        try:
            token, expiry = _refresh(account, request)
        except auth_exceptions.RefreshError as exc:
            failure = _refresh_failure(account, exc)
        except auth_exceptions.TransportError as exc:
            raise TransientError(
                f"Google token endpoint unreachable: {type(exc).__name__}"
            ) from None
        else:
            account.access_token_encrypted = encrypt_token(token)
            account.access_token_expires_at = expiry.replace(tzinfo=UTC)
            account.last_error = ""
            account.save(
                update_fields=[
                    "access_token_encrypted",
                    "access_token_expires_at",
                    "last_error",
                    "updated_at",
                ]
            )
            return token, expiry
    # Raised outside the atomic block so the needs_reauth status is committed, not rolled back.
    raise failure


def _refresh(account: GoogleAccount, request: Request) -> tuple[str, datetime]:
    credentials = Credentials(
        token=None,
        refresh_token=decrypt_token(account.refresh_token_encrypted),
        token_uri=token_uri(),
        client_id=settings.GOOGLE_CLIENT_ID,
        client_secret=settings.GOOGLE_CLIENT_SECRET,
    )
    credentials.refresh(request)
    if not credentials.token:
        raise auth_exceptions.RefreshError("Google's token endpoint returned no access token")
    expiry = credentials.expiry or (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None)
    logger.info("refreshed the access token of Google account %s", account.pk)
    return credentials.token, expiry


def _refresh_failure(account: GoogleAccount, exc: auth_exceptions.RefreshError) -> Exception:
    """Map a RefreshError: invalid_grant -> needs_reauth + PermanentError; retryable -> retry."""
    if getattr(exc, "retryable", False):
        return TransientError("Google's token endpoint failed; will retry")
    if _is_invalid_grant(exc):
        # imported here: jobs.google.accounts imports the client, which imports this module
        from jobs.google.accounts import google_account_mark_needs_reauth

        google_account_mark_needs_reauth(account=account, reason=INVALID_GRANT_MESSAGE)
        logger.warning("Google account %s needs re-authorisation (invalid_grant)", account.pk)
        return PermanentError(f"Google account {account.pk}: {INVALID_GRANT_MESSAGE}")
    code = _oauth_error_code(exc) or "refresh failed"
    account.last_error = f"token refresh failed: {code}"
    account.save(update_fields=["last_error", "updated_at"])
    return PermanentError(f"Google account {account.pk}: token refresh failed ({code})")


def _oauth_error_code(exc: auth_exceptions.RefreshError) -> str:
    # RefreshError(message, response_data): only the OAuth error code is safe to repeat.
    for arg in exc.args:
        if isinstance(arg, dict) and isinstance(arg.get("error"), str):
            return arg["error"]
    return ""


def _is_invalid_grant(exc: auth_exceptions.RefreshError) -> bool:
    return _oauth_error_code(exc) == "invalid_grant" or "invalid_grant" in str(exc.args[:1])


def _naive_utc(value: datetime) -> datetime:
    # google-auth compares expiry with a naive UTC "now".
    return value.astimezone(UTC).replace(tzinfo=None)
