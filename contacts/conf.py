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
import re
from dataclasses import dataclass, field
from typing import Any

from jobs.config import AppSettings

SETTING = "CRM_PIPELINE_CONTACTS"
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

_REGEXES = {"pattern": r".+", "expected": "a list of regular expressions"}


@dataclass(frozen=True, slots=True)
class ContactsSettings:
    """The keys of CRM_PIPELINE_CONTACTS; each field's metadata says what a valid value is
    (jobs.config's validator). `ContactsConfig` is what the code reads."""

    chunk_size: int = field(default=500, metadata={"min": 10, "max": 5000})
    fuzzy_threshold: float = field(default=88.0, metadata={"min": 50, "max": 100})
    personal_domains: tuple[str, ...] = field(
        default=DEFAULT_PERSONAL_DOMAINS,
        metadata={"pattern": r"\S+", "expected": "a list of domain names"},
    )
    automated_patterns: tuple[str, ...] = field(
        default=DEFAULT_AUTOMATED_PATTERNS, metadata=_REGEXES
    )
    extra_automated_patterns: tuple[str, ...] = field(default=(), metadata=_REGEXES)
    exclude_bulk: bool = True
    suggestion_candidates: int = field(default=200, metadata={"min": 1, "max": 1000})


@dataclass(frozen=True, slots=True)
class ContactsConfig:
    chunk_size: int = 500
    fuzzy_threshold: float = 88.0
    personal_domains: frozenset[str] = frozenset(DEFAULT_PERSONAL_DOMAINS)
    automated_patterns: tuple[re.Pattern[str], ...] = ()
    exclude_bulk: bool = True
    suggestion_candidates: int = 200


def _compile(name: str, patterns: tuple[str, ...], problems: list[str]) -> list[re.Pattern[str]]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            problems.append(
                f"{SETTING}[{name!r}]: got {json.dumps(pattern)} (not a regular expression: "
                f"{exc}); expected a list of regular expressions"
            )
    return compiled


def _build(values: dict[str, Any], problems: list[str]) -> ContactsConfig:
    keys = ContactsSettings(**values)
    patterns = _compile("automated_patterns", keys.automated_patterns, problems)
    patterns += _compile("extra_automated_patterns", keys.extra_automated_patterns, problems)
    return ContactsConfig(
        chunk_size=keys.chunk_size,
        fuzzy_threshold=keys.fuzzy_threshold,
        personal_domains=frozenset(d.strip().lower() for d in keys.personal_domains),
        automated_patterns=tuple(patterns),
        exclude_bulk=keys.exclude_bulk,
        suggestion_candidates=keys.suggestion_candidates,
    )


SETTINGS = AppSettings(
    SETTING,
    ContactsSettings,
    example='{"fuzzy_threshold": 90}',
    check_id="contacts.E001",
    build=_build,
)
config_problems = SETTINGS.problems
build_config = SETTINGS.build
get_config = SETTINGS.get
