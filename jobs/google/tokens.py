"""OAuth token encryption at rest: MultiFernet over CRM_PIPELINE_ENCRYPTION_KEYS, rotatable."""

from __future__ import annotations

import base64
import functools
import hashlib
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

KEYS_SETTING = "CRM_PIPELINE_ENCRYPTION_KEYS"
MISSING_KEYS = (
    f"{KEYS_SETTING} is not set: Google tokens cannot be stored. Generate a key with "
    '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"` '
    f"and set {KEYS_SETTING} (comma-separated, newest first) in the environment."
)


class TokenDecryptionError(ImproperlyConfigured):
    """A stored ciphertext matches none of the configured keys (a key was dropped too early)."""


def _dev_mode() -> bool:
    return bool(settings.DEBUG or getattr(settings, "TESTING", False))


def configured_keys() -> tuple[str, ...]:
    """The configured keys, newest first; a comma-separated string is accepted too."""
    value: Any = getattr(settings, KEYS_SETTING, None) or ()
    if isinstance(value, str):
        value = value.split(",")
    return tuple(key.strip() for key in value if key and key.strip())


def development_key() -> str:
    """DEV ONLY: a key derived from SECRET_KEY, used when DEBUG/tests run without configured keys.

    Anyone holding SECRET_KEY could decrypt with it, and changing SECRET_KEY makes stored tokens
    unreadable; production refuses to start without real keys (check crm_pipeline.E001).
    """
    digest = hashlib.sha256(b"crm-pipeline token key (development only):" + _secret()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def _secret() -> bytes:
    return str(settings.SECRET_KEY).encode()


@functools.lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            # Never echo the key itself.
            raise ImproperlyConfigured(
                f"{KEYS_SETTING}: key #{position} is not a valid Fernet key "
                "(32 bytes, urlsafe base64)"
            ) from None
    return MultiFernet(fernets)


def _current_keys() -> tuple[str, ...]:
    keys = configured_keys()
    if keys:
        return keys
    if not _dev_mode():
        raise ImproperlyConfigured(MISSING_KEYS)
    return (development_key(),)


def _current() -> MultiFernet:
    return _fernet(_current_keys())


def encrypt_token(token: str) -> str:
    """Ciphertext of `token` under the first key ("" stays "")."""
    if not token:
        return ""
    return _current().encrypt(token.encode()).decode()


def decrypt_token(ciphertext: str) -> str:
    """The token behind `ciphertext`, trying every configured key ("" stays "")."""
    if not ciphertext:
        return ""
    try:
        return _current().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise TokenDecryptionError(
            f"a stored Google token matches none of the keys in {KEYS_SETTING}; "
            "was a key removed before `manage.py rotate_tokens` ran?"
        ) from None


def rotate(ciphertext: str) -> str:
    """Re-encrypt `ciphertext` under the first key (MultiFernet.rotate; "" stays "")."""
    if not ciphertext:
        return ""
    try:
        return _current().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise TokenDecryptionError(
            f"a stored Google token matches none of the keys in {KEYS_SETTING}"
        ) from None


def is_current(ciphertext: str) -> bool:
    """True when `ciphertext` is already under the first key (nothing to rotate)."""
    if not ciphertext:
        return True
    try:
        _fernet(_current_keys()[:1]).decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True


@checks.register(checks.Tags.security)
def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Refuse to run outside DEBUG/tests without keys, and reject malformed keys anywhere."""
    keys = configured_keys()
    if not keys:
        if _dev_mode():
            return []
        return [
            checks.Error(
                MISSING_KEYS,
                hint="Tokens are encrypted at rest; a development key is derived only with DEBUG.",
                id="crm_pipeline.E001",
            )
        ]
    try:
        _fernet(keys)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="crm_pipeline.E002")]
    return []
