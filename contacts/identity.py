"""Identity rules, as pure functions: matching keys, names, and who never becomes a contact."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

import idna

# Gmail ignores dots and +tags in the local part, and googlemail.com is gmail.com.
GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
RESOURCE_DOMAIN = "resource.calendar.google.com"
GROUP_CALENDAR_DOMAINS = (
    "group.calendar.google.com",
    "group.v.calendar.google.com",
    "import.calendar.google.com",
)
GROUP_CALENDAR_SUFFIXES = tuple("." + d for d in GROUP_CALENDAR_DOMAINS)

# Why a participant is not linked to a contact (metrics and docs use these names).
EXCLUDED_OWN = "own_address"
EXCLUDED_RESOURCE = "resource"
EXCLUDED_GROUP_CALENDAR = "group_calendar"
EXCLUDED_AUTOMATED = "automated"
EXCLUDED_BULK = "bulk"
EXCLUDED_INVALID = "invalid_address"

_WHITESPACE = re.compile(r"\s")
_SEPARATORS = re.compile(r"[._\-]+")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=4096)
def idna_domain(domain: str) -> str | None:
    """The domain as lowercase ASCII (IDNA/punycode), from either form; None if not valid."""
    domain = domain.strip().rstrip(".")
    if not domain:
        return None
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        pass
    try:  # IDNA 2003 accepts some names (e.g. with underscores) that IDNA 2008 refuses
        return domain.lower().encode("idna").decode("ascii")
    except UnicodeError:
        return domain.lower() if domain.isascii() else None


@lru_cache(maxsize=65_536)
def matching_key(address: str) -> str | None:
    """The key an address matches on: lowercased, IDNA (ASCII) domain; for gmail.com and
    googlemail.com only, dots and +tags in the local part folded and the domain gmail.com.
    None when the value is not an address (no local part or domain, or whitespace)."""
    if not isinstance(address, str):
        return None
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or _WHITESPACE.search(address):
        return None
    ascii_domain = idna_domain(domain)
    if ascii_domain is None:
        return None
    local = local.lower()
    if ascii_domain in GMAIL_DOMAINS:
        local = local.partition("+")[0].replace(".", "")
        if not local:
            return None
        ascii_domain = "gmail.com"
    return f"{local}@{ascii_domain}"


def key_domain(key: str) -> str:
    return key.rpartition("@")[2]


def company_domain(key: str, personal_domains: Iterable[str]) -> str:
    """The key's domain, or "" for a personal-mail domain (gmail.com, outlook.com, ...)."""
    domain = key_domain(key)
    return "" if domain in personal_domains else domain


def readable_name(address: str) -> str:
    """A name made from the local part: "jane.doe" -> "Jane Doe", "j_doe+crm" -> "J Doe"."""
    local = address.strip().rpartition("@")[0] or address.strip()
    local = local.partition("+")[0]
    words = [w for w in _SEPARATORS.split(local) if w]
    return " ".join(w[:1].upper() + w[1:].lower() for w in words)


def clean_name(name: str | None, address: str = "") -> str:
    """A display name worth keeping: trimmed, spaces collapsed; "" for an address-like name."""
    if not name:
        return ""
    name = _SPACES.sub(" ", name).strip().strip("'\"").strip()
    if not name or "@" in name or (address and name.lower() == address.lower()):
        return ""
    return name[:255]


def choose_display_name(names: Mapping[str, int], fallback: str) -> str:
    """The most frequent name seen; ties go to the longer, then the alphabetically first.
    `fallback` (usually readable_name(address)) when no name was seen."""
    best = sorted(
        ((count, name) for name, count in names.items() if name),
        key=lambda x: (-x[0], -len(x[1]), x[1]),
    )
    return best[0][1] if best else fallback


def is_group_calendar(key: str) -> bool:
    domain = key_domain(key)
    return domain in GROUP_CALENDAR_DOMAINS or domain.endswith(GROUP_CALENDAR_SUFFIXES)


def is_resource(key: str) -> bool:
    domain = key_domain(key)
    return domain == RESOURCE_DOMAIN or domain.endswith("." + RESOURCE_DOMAIN)


def is_automated(key: str, patterns: Iterable[re.Pattern[str]]) -> bool:
    return any(pattern.search(key) for pattern in patterns)


def exclusion_reason(
    key: str,
    *,
    own_keys: frozenset[str],
    patterns: Iterable[re.Pattern[str]],
    resource: bool = False,
    own: bool = False,
) -> str | None:
    """Why `key` never becomes a contact, or None. `resource`/`own` are what the provider said
    (a Calendar attendee's `resource: true`, `self: true`)."""
    if own or key in own_keys:
        return EXCLUDED_OWN
    if resource or is_resource(key):
        return EXCLUDED_RESOURCE
    if is_group_calendar(key):
        return EXCLUDED_GROUP_CALENDAR
    if is_automated(key, patterns):
        return EXCLUDED_AUTOMATED
    return None


def own_keys(addresses: Iterable[str]) -> frozenset[str]:
    """Matching keys of the user's own addresses and aliases."""
    return frozenset(k for a in addresses if (k := matching_key(a)))
