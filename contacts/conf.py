"""Contact-resolution settings: ``settings.CRM_PIPELINE_CONTACTS`` (a dict) over defaults.

Keys (all optional):
- ``chunk_size`` (int, 10..5000, default 500): interactions per extract_contacts chunk.
- ``fuzzy_threshold`` (float, 50..100, default 88): rapidfuzz token_sort_ratio at or above
  which two contacts at the same company domain get a MergeSuggestion.
- ``personal_domains`` (list of str): personal-mail domains (no company domain; a suggestion
  there needs the very same name). Replaces the default list.
- ``automated_patterns`` (list of regexes, matched against the lowercased address): senders
  that never become contacts. Replaces the default list.
- ``extra_automated_patterns`` (list of regexes): added to the default list.
- ``exclude_bulk`` (bool, default True): participants of List-Unsubscribe / Precedence: bulk
  mail are excluded unless the user has written to them.
- ``suggestion_candidates`` (int, 1..1000, default 200): how many same-domain contacts a new
  or renamed contact is compared with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

DEFAULT_PERSONAL_DOMAINS: tuple[str, ...] = (
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "yahoo.com",
    "ymail.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.com",
    "yandex.ru",
    "fastmail.com",
)

# Matched (re.search) against the lowercased address "local@domain".
DEFAULT_AUTOMATED_PATTERNS: tuple[str, ...] = (
    r"^no[-_.]?reply",
    r"^do[-_.]?not[-_.]?reply",
    r"^notifications?@",
    r"^notify@",
    r"^mailer-daemon@",
    r"^postmaster@",
    r"^bounces?([-+._].*)?@",
    r"^auto[-_.]?(reply|responder)",
    r"[-+._]noreply@",
)

_KEYS = {
    "chunk_size",
    "fuzzy_threshold",
    "personal_domains",
    "automated_patterns",
    "extra_automated_patterns",
    "exclude_bulk",
    "suggestion_candidates",
}


@dataclass(frozen=True, slots=True)
class ContactsConfig:
    chunk_size: int = 500
    fuzzy_threshold: float = 88.0
    personal_domains: frozenset[str] = frozenset(DEFAULT_PERSONAL_DOMAINS)
    automated_patterns: tuple[re.Pattern[str], ...] = ()
    exclude_bulk: bool = True
    suggestion_candidates: int = 200


def _number(raw: dict[str, Any], name: str, kind: type, low: float, high: float, default: Any):
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImproperlyConfigured(f"CRM_PIPELINE_CONTACTS[{name!r}] must be a number")
    if kind is int and value != int(value):
        raise ImproperlyConfigured(f"CRM_PIPELINE_CONTACTS[{name!r}] must be a whole number")
    if not low <= value <= high:
        raise ImproperlyConfigured(
            f"CRM_PIPELINE_CONTACTS[{name!r}] is {value}; it must be between {low} and {high}"
        )
    return kind(value)


def _strings(raw: dict[str, Any], name: str) -> list[str] | None:
    if name not in raw:
        return None
    value = raw[name]
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) and x for x in value):
        raise ImproperlyConfigured(
            f"CRM_PIPELINE_CONTACTS[{name!r}] must be a list of non-empty strings"
        )
    return list(value)


def _compile(patterns: list[str]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ImproperlyConfigured(
                f"CRM_PIPELINE_CONTACTS automated pattern {pattern!r} is not a regex: {exc}"
            ) from None
    return tuple(compiled)


def build_config(raw: Any) -> ContactsConfig:
    """Validate a CRM_PIPELINE_CONTACTS dict; ImproperlyConfigured names the bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured("CRM_PIPELINE_CONTACTS must be a dict")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"CRM_PIPELINE_CONTACTS has unknown keys {unknown}; known: {sorted(_KEYS)}"
        )
    exclude_bulk = raw.get("exclude_bulk", True)
    if not isinstance(exclude_bulk, bool):
        raise ImproperlyConfigured("CRM_PIPELINE_CONTACTS['exclude_bulk'] must be true or false")
    personal = _strings(raw, "personal_domains")
    patterns = _strings(raw, "automated_patterns")
    extra = _strings(raw, "extra_automated_patterns") or []
    return ContactsConfig(
        chunk_size=_number(raw, "chunk_size", int, 10, 5000, 500),
        fuzzy_threshold=_number(raw, "fuzzy_threshold", float, 50, 100, 88.0),
        personal_domains=frozenset(
            d.strip().lower() for d in (DEFAULT_PERSONAL_DOMAINS if personal is None else personal)
        ),
        automated_patterns=_compile(
            [*(DEFAULT_AUTOMATED_PATTERNS if patterns is None else patterns), *extra]
        ),
        exclude_bulk=exclude_bulk,
        suggestion_candidates=_number(raw, "suggestion_candidates", int, 1, 1000, 200),
    )


@lru_cache(maxsize=1)
def get_config() -> ContactsConfig:
    return build_config(getattr(settings, "CRM_PIPELINE_CONTACTS", None))


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "CRM_PIPELINE_CONTACTS":
        get_config.cache_clear()


setting_changed.connect(_reset)
