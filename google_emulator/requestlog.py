"""A thread-safe log of the requests the emulator answered, with Gmail quota accounting."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class LogEntry:
    """One answered request; a batch logs one entry per part plus one for the HTTP request."""

    method: str
    path: str
    route: str
    status: int
    duration_s: float
    quota_units: int = 0
    in_batch: bool = False
    batch_parts: int = 0
    at: float = 0.0  # time.monotonic() when the emulator started answering it


class RequestLog:
    """Entries in the order they finished."""

    def __init__(self) -> None:
        self._entries: list[LogEntry] = []
        self._lock = threading.Lock()

    def append(self, entry: LogEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    @property
    def entries(self) -> list[LogEntry]:
        with self._lock:
            return list(self._entries)

    def __iter__(self) -> Iterator[LogEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __getitem__(self, index: int) -> LogEntry:
        with self._lock:
            return self._entries[index]

    def count(self, route: str | None = None, http_only: bool = True) -> int:
        """HTTP requests (a batch counts once), or with http_only=False also each batch part."""
        return sum(1 for entry in self._select(http_only) if route is None or entry.route == route)

    def quota_units(self) -> int:
        """Gmail quota units spent; every part of a batch is priced as its own call."""
        return sum(entry.quota_units for entry in self.entries)

    def paths(self, http_only: bool = True) -> list[str]:
        return [entry.path for entry in self._select(http_only)]

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()

    def _select(self, http_only: bool) -> list[LogEntry]:
        return [entry for entry in self.entries if not (http_only and entry.in_batch)]
