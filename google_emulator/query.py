"""Gmail search (`q`) for messages.list: the operators sync code uses, evaluated like Gmail."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from google_emulator.errors import invalid_argument
from google_emulator.state import StoredMessage

Predicate = Callable[[StoredMessage], bool]

# Gmail reads YYYY/MM/DD as midnight Pacific time (its documented behaviour).
_GMAIL_DATE_ZONE = ZoneInfo("America/Los_Angeles")
_TERM = re.compile(r'(-?)(?:(\w+):)?("[^"]*"|\S+)')
_FOLDERS = {
    "inbox": "INBOX",
    "sent": "SENT",
    "draft": "DRAFT",
    "drafts": "DRAFT",
    "spam": "SPAM",
    "trash": "TRASH",
    "starred": "STARRED",
    "important": "IMPORTANT",
    "unread": "UNREAD",
    "chat": "CHAT",
    "chats": "CHAT",
}
_CATEGORIES = {
    "primary": "CATEGORY_PERSONAL",
    "personal": "CATEGORY_PERSONAL",
    "social": "CATEGORY_SOCIAL",
    "promotions": "CATEGORY_PROMOTIONS",
    "updates": "CATEGORY_UPDATES",
    "forums": "CATEGORY_FORUMS",
}
_HEADER_OPERATORS = {"from": ("from",), "to": ("to",), "cc": ("cc",), "subject": ("subject",)}
# Real Gmail operators this emulator does not evaluate: refuse them rather than mis-filter.
_UNSUPPORTED = {"has", "filename", "larger", "smaller", "size", "list", "deliveredto", "bcc"}
_UNSUPPORTED_WORDS = {"OR", "AND", "AROUND"}
_RELATIVE_UNITS = {"d": 86400, "m": 30 * 86400, "y": 365 * 86400}


@dataclass
class Query:
    """A compiled query: every term must hold. `spam_trash` is set when it asks for them."""

    predicates: list[Predicate] = field(default_factory=list)
    spam_trash: bool = False

    def matches(self, message: StoredMessage) -> bool:
        return all(predicate(message) for predicate in self.predicates)


def compile_query(text: str, labels: Mapping[str, str]) -> Query:
    """Compile `q`; 400 for operators the emulator cannot evaluate faithfully."""
    query = Query()
    for negated, operator, value in _TERM.findall(text or ""):
        value = value.strip('"')
        predicate = _term(query, (operator or "").lower(), value, labels, bool(negated))
        if predicate is not None:
            query.predicates.append(_negate(predicate) if negated else predicate)
    return query


def _negate(predicate: Predicate) -> Predicate:
    return lambda message: not predicate(message)


def _term(
    query: Query, operator: str, value: str, labels: Mapping[str, str], negated: bool
) -> Predicate | None:
    if (
        operator in _UNSUPPORTED
        or (not operator and value in _UNSUPPORTED_WORDS)
        or value[:1] in "({"
    ):
        raise invalid_argument(f"The emulator does not support this search: {operator or value}")
    if operator in ("after", "before"):
        bound_ms: float = _epoch_seconds(value) * 1000
        if operator == "after":
            return lambda message: message.internal_date_ms >= bound_ms
        return lambda message: message.internal_date_ms < bound_ms
    if operator in ("newer_than", "older_than"):
        bound_ms = (time.time() - _relative_seconds(value)) * 1000
        if operator == "newer_than":
            return lambda message: message.internal_date_ms >= bound_ms
        return lambda message: message.internal_date_ms < bound_ms
    if operator in ("in", "label", "is", "category"):
        return _label_term(query, operator, value, labels, negated)
    if operator in _HEADER_OPERATORS:
        return _header_term(_HEADER_OPERATORS[operator], value)
    if operator == "rfc822msgid":
        wanted = value.strip("<>")
        return lambda message: message.header("message-id").strip().strip("<>") == wanted
    word = f"{operator}:{value}" if operator else value
    return _header_term(("subject", "from", "to", "cc"), word, snippet=True)


def _label_term(
    query: Query, operator: str, value: str, labels: Mapping[str, str], negated: bool
) -> Predicate | None:
    key = value.lower()
    if operator == "in" and key == "anywhere":
        query.spam_trash = True
        return None
    if operator == "is" and key == "read":
        return lambda message: "UNREAD" not in message.label_ids
    label_id = _resolve_label(operator, key, labels)
    if label_id in ("SPAM", "TRASH") and not negated:
        query.spam_trash = True
    return lambda message: label_id in message.label_ids


def _resolve_label(operator: str, key: str, labels: Mapping[str, str]) -> str | None:
    if operator == "category":
        return _CATEGORIES.get(key)
    if key in _FOLDERS:
        return _FOLDERS[key]
    if operator == "is":
        return None
    for label_id, name in labels.items():
        # Gmail writes label names in queries lower-cased, with "-" for spaces and slashes.
        if key in (label_id.lower(), re.sub(r"[\s/]+", "-", name.lower())):
            return label_id
    return None


def _header_term(headers: tuple[str, ...], value: str, snippet: bool = False) -> Predicate:
    needle = value.lower()

    def matches(message: StoredMessage) -> bool:
        texts = [message.header(name) for name in headers]
        if snippet:
            texts.append(message.full.get("snippet", ""))
        return any(needle in text.lower() for text in texts)

    return matches


def _epoch_seconds(value: str) -> int:
    if value.isdigit():
        return int(value)
    parts = re.split(r"[/-]", value)
    try:
        if len(parts) == 3 and len(parts[0]) == 4:
            year, month, day = map(int, parts)
        elif len(parts) == 3:
            month, day, year = map(int, parts)
        else:
            raise ValueError(value)
        return int(datetime(year, month, day, tzinfo=_GMAIL_DATE_ZONE).timestamp())
    except ValueError:
        raise invalid_argument(f"Invalid date in query: {value}") from None


def _relative_seconds(value: str) -> int:
    number, unit = value[:-1], value[-1:].lower()
    if not number.isdigit() or unit not in _RELATIVE_UNITS:
        raise invalid_argument(f"Invalid relative date in query: {value}")
    return int(number) * _RELATIVE_UNITS[unit]
