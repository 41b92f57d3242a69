"""Query-parameter parsing and opaque page tokens, with Google's 400s for bad values."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import parse_qs

from google_emulator.errors import invalid_argument


class Params:
    """Repeated query parameters, read with Google's coercion and validation rules."""

    def __init__(self, query: str) -> None:
        self._values = parse_qs(query, keep_blank_values=True)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._values.get(name)
        return values[0] if values else default

    def get_list(self, name: str) -> list[str]:
        return list(self._values.get(name, []))

    def get_int(self, name: str, default: int, maximum: int) -> int:
        """A positive integer clamped to `maximum`, as Google treats maxResults."""
        text = self.get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise invalid_argument(f"Invalid value '{text}' for {name}") from None
        if value < 1:
            raise invalid_argument(f"Invalid value '{text}' for {name}")
        return min(value, maximum)

    def get_bool(self, name: str) -> bool:
        text = self.get(name)
        if text is None:
            return False
        if text.lower() not in ("true", "false"):
            raise invalid_argument(f"Invalid value '{text}' for {name}, must be a boolean")
        return text.lower() == "true"


def encode_token(state: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def decode_token(token: str, what: str = "pageToken") -> dict:
    """Decode a token this emulator issued; anything else is a 400 like Google's."""
    try:
        state = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid_argument(f"Invalid {what}") from None
    if not isinstance(state, dict):
        raise invalid_argument(f"Invalid {what}")
    return state
