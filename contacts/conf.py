"""Contact-resolution settings: ``settings.CRM_PIPELINE_CONTACTS`` (a dict, from the JSON
environment variable of that name) over defaults. A bad value is refused at start-up by the
system check contacts.E001 (contacts/checks.py), one line per problem.

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

import json
import math
import re
from dataclasses import dataclass, fields
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


_DEFAULTS = {f.name: f.default for f in fields(ContactsConfig)}


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _problem(name: str, value: Any, expected: str, detail: str = "") -> str:
    return f"CRM_PIPELINE_CONTACTS[{name!r}]: got {_show(value)}{detail}; expected {expected}"


def _number(
    raw: dict[str, Any], problems: list[str], name: str, kind: type, low: int, high: int
) -> Any:
    default = _DEFAULTS[name]
    if name not in raw:
        return default
    value = raw[name]
    whole = "a whole number" if kind is int else "a number"
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (kind is not int or value == int(value))
        and low <= value <= high
    )
    if not ok:
        problems.append(_problem(name, value, f"{whole} between {low} and {high}"))
        return default
    return kind(value)


def _strings(raw: dict[str, Any], problems: list[str], name: str, what: str) -> list[str] | None:
    if name not in raw:
        return None
    value = raw[name]
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) and x for x in value):
        problems.append(_problem(name, value, f"a list of {what}"))
        return None
    return list(value)


def _compile(
    raw: dict[str, Any], problems: list[str], name: str
) -> tuple[re.Pattern[str], ...] | None:
    patterns = _strings(raw, problems, name, "regular expressions")
    if patterns is None:
        return None
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            problems.append(
                _problem(
                    name,
                    pattern,
                    "a list of regular expressions",
                    f" (not a regular expression: {exc})",
                )
            )
    return tuple(compiled)


_EXPECTED_OBJECT = 'expected a JSON object of contact settings, such as {"fuzzy_threshold": 90}'


def _parse(raw: Any) -> tuple[ContactsConfig, list[str]]:
    """(config, problems): every problem names the key, the value and what is expected; the
    config has the defaults where a value is bad."""
    if raw is None:
        raw = {}
    if isinstance(raw, str):
        # The settings keep an unparsable CRM_PIPELINE_CONTACTS environment variable as it came.
        try:
            json.loads(raw)
            detail = ""
        except ValueError as exc:
            detail = f" (not valid JSON: {exc})"
        return ContactsConfig(), [f"CRM_PIPELINE_CONTACTS: got {raw!r}{detail}; {_EXPECTED_OBJECT}"]
    if not isinstance(raw, dict):
        return ContactsConfig(), [
            f"CRM_PIPELINE_CONTACTS: got {_show(raw)} ({type(raw).__name__}); {_EXPECTED_OBJECT}"
        ]
    problems: list[str] = []
    for name in raw:
        if name not in _KEYS:
            problems.append(
                f"CRM_PIPELINE_CONTACTS[{name!r}]: unknown key (value {_show(raw[name])}); "
                f"expected one of {', '.join(json.dumps(k) for k in sorted(_KEYS))}"
            )
    exclude_bulk = raw.get("exclude_bulk", True)
    if not isinstance(exclude_bulk, bool):
        problems.append(_problem("exclude_bulk", exclude_bulk, "true or false"))
        exclude_bulk = True
    personal = _strings(raw, problems, "personal_domains", "domain names")
    patterns = _compile(raw, problems, "automated_patterns")
    extra = _compile(raw, problems, "extra_automated_patterns") or ()
    config = ContactsConfig(
        chunk_size=_number(raw, problems, "chunk_size", int, 10, 5000),
        fuzzy_threshold=float(_number(raw, problems, "fuzzy_threshold", float, 50, 100)),
        personal_domains=frozenset(
            d.strip().lower() for d in (DEFAULT_PERSONAL_DOMAINS if personal is None else personal)
        ),
        automated_patterns=(
            tuple(re.compile(p) for p in DEFAULT_AUTOMATED_PATTERNS)
            if patterns is None
            else patterns
        )
        + extra,
        exclude_bulk=exclude_bulk,
        suggestion_candidates=_number(raw, problems, "suggestion_candidates", int, 1, 1000),
    )
    return config, problems


def config_problems() -> list[str]:
    """Everything wrong with settings.CRM_PIPELINE_CONTACTS, one line each (empty when valid)."""
    return _parse(getattr(settings, "CRM_PIPELINE_CONTACTS", None))[1]


def build_config(raw: Any) -> ContactsConfig:
    """Validate a CRM_PIPELINE_CONTACTS value; ImproperlyConfigured names every bad key."""
    config, problems = _parse(raw)
    if problems:
        raise ImproperlyConfigured("; ".join(problems))
    return config


@lru_cache(maxsize=1)
def get_config() -> ContactsConfig:
    return build_config(getattr(settings, "CRM_PIPELINE_CONTACTS", None))


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "CRM_PIPELINE_CONTACTS":
        get_config.cache_clear()


setting_changed.connect(_reset)
