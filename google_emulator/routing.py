"""The request/response types handlers see, and the route table that maps paths to handlers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

from google_emulator.params import Params

if TYPE_CHECKING:
    from google_emulator.accounts import Grant
    from google_emulator.server import GoogleEmulator
    from google_emulator.state import Mailbox

JSON_TYPE = "application/json; charset=UTF-8"


@dataclass
class Reply:
    """What a handler answers: status, headers and an already-encoded body."""

    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    batch_parts: int = 0  # for the request log: how many calls a batch answer carries


def json_reply(data: dict, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return Reply(status, body, JSON_TYPE, dict(headers or {}))


@dataclass
class Call:
    """One API call, an HTTP request or a part of a batch, as a handler sees it."""

    method: str
    path: str
    params: Params
    headers: dict[str, str]  # lower-case names
    body: bytes
    args: dict[str, str]
    emulator: GoogleEmulator
    mailbox: Mailbox | None = None
    grant: Grant | None = None  # set when the bearer token was issued by this emulator


Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    """A Google method: its id (as faults and the log name it), HTTP method and path pattern."""

    name: str
    method: str
    pattern: str
    handler: Handler
    api: str  # gmail | calendar | oauth | batch: which credentials and scopes apply
    quota_units: int = 0

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        found = _compiled(self.pattern).fullmatch(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    # "{name}" matches one path segment, as in the discovery documents' flatPath.
    if pattern not in _PATTERNS:
        _PATTERNS[pattern] = re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern))
    return _PATTERNS[pattern]
