"""Accounts and OAuth 2.0 grants: authorization codes, refresh and access tokens, revocation."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from google_emulator import errors
from google_emulator.state import Mailbox

DEFAULT_SCOPE = (
    "https://www.googleapis.com/auth/gmail.readonly "
    "https://www.googleapis.com/auth/calendar.readonly"
)
ACCESS_TOKEN_LIFETIME_S = 3599
# Any of these grants access to the API (Google also accepts the broader scopes).
_API_SCOPES = {
    "gmail": ("https://mail.google.com/", "https://www.googleapis.com/auth/gmail."),
    "calendar": ("https://www.googleapis.com/auth/calendar",),
}


@dataclass
class Grant:
    """What a user consented to: one account, one client, some scopes."""

    email: str
    client_id: str
    scope: str
    refresh_token: str | None
    revoked: bool = False

    def allows(self, api: str) -> bool:
        return any(
            scope.startswith(prefix) for scope in self.scope.split() for prefix in _API_SCOPES[api]
        )


@dataclass
class AccessToken:
    grant: Grant
    expires_at: float
    expired: bool = False

    def valid(self) -> bool:
        return not (self.expired or self.grant.revoked or time.time() >= self.expires_at)


@dataclass
class AuthCode:
    grant: Grant
    redirect_uri: str
    code_challenge: str | None
    challenge_method: str
    used: bool = False


def _token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


class Accounts:
    """The mailboxes the emulator serves and every credential issued for them; thread-safe."""

    def __init__(self, on_add: Callable[[Mailbox], None] | None = None) -> None:
        self._lock = threading.RLock()
        # Called with every mailbox added (the emulator's push side listens to its changes).
        self._on_add = on_add
        self._mailboxes: dict[str, Mailbox] = {}
        self._default: str | None = None
        self._refresh: dict[str, Grant] = {}
        self._access: dict[str, AccessToken] = {}
        self._codes: dict[str, AuthCode] = {}

    # -- mailboxes ----------------------------------------------------------------------------

    def add(self, mailbox: Mailbox) -> Mailbox:
        """Serve a mailbox; the first one added is the default account."""
        with self._lock:
            self._mailboxes[mailbox.email.lower()] = mailbox
            self._default = self._default or mailbox.email.lower()
            if self._on_add is not None:
                self._on_add(mailbox)
            return mailbox

    def get(self, email: str | None = None) -> Mailbox:
        """A mailbox by address (KeyError when absent), or the default one."""
        with self._lock:
            key = (email or self._default or "").lower()
            if key not in self._mailboxes:
                raise KeyError(email or "no mailbox has been added")
            return self._mailboxes[key]

    def find(self, email: str) -> Mailbox | None:
        with self._lock:
            return self._mailboxes.get(email.lower())

    def ensure(self, email: str, aliases: Sequence[str] = ()) -> Mailbox:
        with self._lock:
            return self.find(email) or self.add(Mailbox(email, aliases))

    # -- grants -------------------------------------------------------------------------------

    def register(self, email: str, *, client_id: str = "", scope: str = DEFAULT_SCOPE) -> str:
        """An offline grant for the account (created if absent); returns its refresh token."""
        with self._lock:
            self.ensure(email)
            token = _token("1//")
            self._refresh[token] = Grant(email.lower(), client_id, scope, token)
            return token

    def issue_code(
        self,
        email: str,
        *,
        client_id: str = "",
        redirect_uri: str = "",
        scope: str = DEFAULT_SCOPE,
        offline: bool = True,
        code_challenge: str | None = None,
        challenge_method: str = "plain",
    ) -> str:
        """An authorization code as the consent screen would return it."""
        with self._lock:
            mailbox = self.get(email)
            refresh_token = _token("1//") if offline else None
            grant = Grant(mailbox.email.lower(), client_id, scope, refresh_token)
            code = _token("4/0A")
            self._codes[code] = AuthCode(grant, redirect_uri, code_challenge, challenge_method)
            return code

    def exchange_code(self, form: Mapping[str, str]) -> dict:
        """grant_type=authorization_code: one use per code, redirect_uri and PKCE checked."""
        with self._lock:
            auth = self._codes.get(form.get("code", ""))
            if auth is None or auth.used:
                raise errors.invalid_grant("Bad Request")
            if auth.grant.client_id and form.get("client_id") != auth.grant.client_id:
                raise errors.OAuthError(401, "invalid_client", "Unauthorized")
            if auth.redirect_uri and form.get("redirect_uri") != auth.redirect_uri:
                raise errors.OAuthError(400, "redirect_uri_mismatch", "Bad Request")
            _check_pkce(auth, form.get("code_verifier"))
            auth.used = True
            if auth.grant.refresh_token:
                self._refresh[auth.grant.refresh_token] = auth.grant
            return self._issue_access(auth.grant, with_refresh=True)

    def refresh(self, form: Mapping[str, str]) -> dict:
        """grant_type=refresh_token."""
        with self._lock:
            grant = self._refresh.get(form.get("refresh_token", ""))
            if grant is None or grant.revoked:
                raise errors.invalid_grant()
            if grant.client_id and form.get("client_id") != grant.client_id:
                raise errors.OAuthError(401, "unauthorized_client", "Unauthorized")
            return self._issue_access(grant, with_refresh=False)

    def revoke(self, token: str) -> None:
        """Revoke the grant behind a refresh or access token (Google revokes both)."""
        with self._lock:
            grant = self._refresh.get(token)
            if grant is None and token in self._access:
                grant = self._access[token].grant
            if grant is None or grant.revoked:
                raise errors.OAuthError(400, "invalid_token", "Token expired or revoked")
            grant.revoked = True

    def expire_access_tokens(self) -> None:
        """Every access token issued so far now answers 401, as after its hour is up."""
        with self._lock:
            for token in self._access.values():
                token.expired = True

    def authenticate(
        self, authorization: str | None, require_token: bool
    ) -> tuple[Mailbox, Grant | None]:
        """The account a request acts for, and the grant when the token is one this emulator issued.

        A token this emulator issued acts for the account it was issued for, in every mode, and
        is 401 once expired or revoked. Lax mode (require_token=False) only spares a test real
        tokens: a token it did not issue (or none) acts for the one account it serves; with
        several accounts such a token is 401, since it belongs to none of them.
        """
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            access = self._access.get(token.strip()) if scheme.lower() == "bearer" else None
            if access is not None and access.valid():
                return self.get(access.grant.email), access.grant
            if access is not None or require_token or len(self._mailboxes) != 1:
                raise errors.unauthenticated()
            return self.get(), None

    def emails(self) -> list[str]:
        """Every served account's address, the default first."""
        with self._lock:
            return [mailbox.email for mailbox in self._mailboxes.values()]

    def _issue_access(self, grant: Grant, *, with_refresh: bool) -> dict:
        token = _token("ya29.")
        self._access[token] = AccessToken(grant, time.time() + ACCESS_TOKEN_LIFETIME_S)
        reply = {
            "access_token": token,
            "expires_in": ACCESS_TOKEN_LIFETIME_S,
            "scope": grant.scope,
            "token_type": "Bearer",
        }
        if with_refresh and grant.refresh_token:
            reply["refresh_token"] = grant.refresh_token
        return reply


def _check_pkce(auth: AuthCode, verifier: str | None) -> None:
    if auth.code_challenge is None:
        return
    if not verifier:
        raise errors.invalid_grant("Missing code verifier.")
    if auth.challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        verifier = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    if verifier != auth.code_challenge:
        raise errors.invalid_grant("Invalid code verifier.")
