"""Who may push: the OIDC token Cloud Pub/Sub signs for a push subscription, verified.

A push subscription with authentication sends `Authorization: Bearer <JWT>`: RS256, signed by
Google (the keys at push_jwks_url, Google's JWKS by default), issuer accounts.google.com,
audience the subscription's configured audience, `email` the service account the subscription
signs as. `pubsub_token_verify` checks all of that and the expiry; nothing else reaches the
push view.

Why PyJWT and not google-auth's `id_token.verify_token`: google-auth fetches the certificates
on every call (caching needs a CacheControl-wrapped session google-auth-httplib2 does not
offer), and for the JWKS format it imports PyJWT anyway, without clock-skew leeway. Here the
keys are cached per process for as long as the JWKS response's Cache-Control max-age says; a
token whose key id the cache does not know refetches them (Google rotates keys), at most once
per push_jwks_refetch_min_s, so a flood of forged key ids costs one fetch, not one per request.
A failed fetch is not repeated sooner either, and meanwhile the keys last read stay usable for
push_jwks_stale_grace_s past their max-age (stale-if-error): an outage of Google's key endpoint
neither refuses valid pushes nor makes every push wait on a fetch under the cache's lock.

The service account is required (the config check refuses a topic without it): anyone can get
a Google-signed ID token for any audience, only the `email` claim says Pub/Sub signed it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httplib2
import jwt
from jwt import PyJWK, PyJWKSet

from jobs.config import PipelineConfig, get_config

logger = logging.getLogger(__name__)

ISSUERS = ("accounts.google.com", "https://accounts.google.com")
ALGORITHMS = ["RS256"]
# Google's tokens live an hour; a few seconds of clock skew between hosts is tolerated.
LEEWAY_S = 30
# When the JWKS response carries no max-age, its keys are kept this long.
DEFAULT_MAX_AGE_S = 300.0
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


class PushAuthError(Exception):
    """The request may not push: `status` 401 (no or invalid token) or 403 (a valid Google token
    for someone else: another audience or service account); 503 when Google's keys could not be
    read (Pub/Sub retries, and the push is verified then)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _KeySet:
    keys: dict[str, PyJWK] = field(default_factory=dict)
    expires_at: float = float("-inf")  # time.monotonic()
    fetched_at: float = float("-inf")


class JwksCache:
    """The signing keys at one URL, cached per process as Cache-Control says; thread-safe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._set = _KeySet()
        self._lock = threading.Lock()
        self._failed_at = float("-inf")  # time.monotonic() of the last failed fetch
        self.fetches = 0

    def key(self, kid: str, *, config: PipelineConfig) -> PyJWK | None:
        """The key with this id, fetching the set when the cache has expired, or when the id is
        unknown and the last fetch is older than push_jwks_refetch_min_s; None when unknown.

        After a failed fetch none is tried again for push_jwks_refetch_min_s; meanwhile the
        keys last read are used until push_jwks_stale_grace_s past their expiry, and then
        PushAuthError (503) says Google's keys are unavailable."""
        with self._lock:
            now = time.monotonic()
            current = self._set
            interval = config.push_jwks_refetch_min_s
            backing_off = now - self._failed_at < interval
            expired = now >= current.expires_at
            unknown = kid not in current.keys
            if not backing_off and (expired or (unknown and now - current.fetched_at >= interval)):
                try:
                    self._set = current = self._fetch(config)
                except PushAuthError:
                    self._failed_at = now
                    if not self._usable(current, now, config):
                        raise
                    logger.warning("push: using Google's keys past their max-age (refetch failed)")
                else:
                    self._failed_at = float("-inf")
            if not self._usable(current, now, config):
                raise PushAuthError(
                    "Google's signing keys could not be fetched recently", status=503
                )
            return current.keys.get(kid)

    @staticmethod
    def _usable(current: _KeySet, now: float, config: PipelineConfig) -> bool:
        """Fresh, or stale by no more than the grace a failing endpoint is allowed."""
        return now < current.expires_at or (
            bool(current.keys) and now < current.expires_at + config.push_jwks_stale_grace_s
        )

    def _fetch(self, config: PipelineConfig) -> _KeySet:
        self.fetches += 1
        http = httplib2.Http(timeout=config.google_request_timeout_s)
        try:
            response, content = http.request(self.url, "GET")
        except (OSError, httplib2.HttpLib2Error) as exc:
            raise PushAuthError(
                f"Google's signing keys could not be fetched ({type(exc).__name__})", status=503
            ) from None
        if response.status != 200:
            raise PushAuthError(
                f"Google's signing keys could not be fetched (HTTP {response.status})", status=503
            )
        try:
            keys = {
                key.key_id: key
                for key in PyJWKSet.from_dict(json.loads(content)).keys
                if key.key_id and key.public_key_use in ("sig", None)
            }
        except (ValueError, jwt.PyJWKSetError, jwt.InvalidKeyError) as exc:
            raise PushAuthError(
                f"the JWKS at the configured URL is not a key set ({exc})", status=503
            ) from None
        now = time.monotonic()
        return _KeySet(keys, now + max_age(response.get("cache-control")), now)


def max_age(cache_control: str | None) -> float:
    """Seconds the response may be cached (Cache-Control max-age; no-store/no-cache: 0)."""
    text = cache_control or ""
    if re.search(r"no-store|no-cache", text, re.IGNORECASE):
        return 0.0
    found = _MAX_AGE.search(text)
    return float(found.group(1)) if found else DEFAULT_MAX_AGE_S


_caches: dict[str, JwksCache] = {}
_caches_lock = threading.Lock()


def jwks_cache(url: str) -> JwksCache:
    """The process's cache of the keys at `url` (one per URL)."""
    with _caches_lock:
        cache = _caches.get(url)
        if cache is None:
            cache = _caches[url] = JwksCache(url)
        return cache


def jwks_caches_clear() -> None:
    """Forget every cached key set (tests: a new emulator may reuse an old one's port)."""
    with _caches_lock:
        _caches.clear()


def pubsub_token_verify(authorization: str | None, *, config: PipelineConfig | None = None) -> dict:
    """The claims of a valid Pub/Sub push token in an Authorization header, else PushAuthError.

    Valid: RS256 signed by a key of push_jwks_url, issuer accounts.google.com (with or without
    https://), audience push_gmail_audience, not expired, and `email` push_gmail_service_account
    with `email_verified` true. Without an audience or an account nothing verifies (403).
    """
    config = config or get_config()
    if not config.push_gmail_audience:
        raise PushAuthError("Gmail push is not configured (no push_gmail_audience)", status=403)
    wanted = config.push_gmail_service_account.strip().lower()
    if not wanted:
        raise PushAuthError(
            "Gmail push is not configured (no push_gmail_service_account)", status=403
        )
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise PushAuthError("no bearer token", status=401)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise PushAuthError("the bearer token is not a JWT", status=401) from None
    kid = header.get("kid")
    if header.get("alg") not in ALGORITHMS or not isinstance(kid, str):
        raise PushAuthError("the token is not RS256 with a key id", status=401)
    key = jwks_cache(config.push_jwks_url).key(kid, config=config)
    if key is None:
        raise PushAuthError("the token's key id is not one of Google's keys", status=401)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=ALGORITHMS,
            audience=config.push_gmail_audience,
            issuer=ISSUERS,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )
    except jwt.InvalidAudienceError:
        raise PushAuthError("the token is for another audience", status=403) from None
    except jwt.ExpiredSignatureError:
        raise PushAuthError("the token has expired", status=401) from None
    except jwt.InvalidIssuerError:
        raise PushAuthError("the token was not issued by Google", status=401) from None
    except jwt.InvalidTokenError as exc:
        raise PushAuthError(f"invalid token ({type(exc).__name__})", status=401) from None
    if str(claims.get("email", "")).lower() != wanted or claims.get("email_verified") is not True:
        raise PushAuthError("the token was signed for another service account", status=403)
    return claims
