"""Google's per-minute quotas, enforced over a sliding window as Google counts them.

Gmail counts quota units per call (messages.get = 5, each part of a batch priced as its own
call), Calendar counts requests; both per user (one account) and per project (every account
this emulator serves: one emulator is one Cloud project). A call that would take a window over
a limit is answered 429 with Google's body: reason "userRateLimitExceeded" (per user) or
"rateLimitExceeded" (per project), and is not charged. The defaults are Google's for a Cloud
project created after 2026-05-01.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google_emulator import errors


@dataclass(frozen=True)
class QuotaLimits:
    """Per-window limits; `window_s` is Google's minute (tests shorten it)."""

    gmail_units_per_user: float = 6_000
    gmail_units_per_project: float = 1_200_000
    calendar_requests_per_user: float = 600
    calendar_requests_per_project: float = 10_000
    window_s: float = 60.0


class QuotaMeter:
    """Sliding-window spend per scope; thread-safe. `rejections` counts the 429s it caused."""

    def __init__(self, limits: QuotaLimits | None = None) -> None:
        self.limits = limits
        self.rejections: Counter[str] = Counter()
        self._spend: dict[str, deque[tuple[float, float]]] = {}
        self._totals: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = time.monotonic

    @property
    def enabled(self) -> bool:
        return self.limits is not None

    @property
    def rejected(self) -> int:
        """Quota 429s answered so far (per user and per project)."""
        with self._lock:
            return sum(self.rejections.values())

    def charge(self, api: str, user: str, units: float) -> None:
        """Charge a call to the user and the project, or raise the 429 Google would answer."""
        limits = self.limits
        if limits is None or units <= 0 or api not in ("gmail", "calendar"):
            return
        if api == "gmail":
            user_limit, project_limit = limits.gmail_units_per_user, limits.gmail_units_per_project
        else:
            user_limit = limits.calendar_requests_per_user
            project_limit = limits.calendar_requests_per_project
        checks = [
            (f"{api}:user:{user.lower()}", user_limit, "userRateLimitExceeded"),
            (f"{api}:project", project_limit, "rateLimitExceeded"),
        ]
        with self._lock:
            now = self._clock()
            for scope, limit, reason in checks:
                if self._spent(scope, now, limits.window_s) + units > limit:
                    self.rejections[reason] += 1
                    raise quota_exceeded(reason, self._free_at(scope, now, limits, limit, units))
            for scope, _, _ in checks:
                self._spend.setdefault(scope, deque()).append((now, units))
                self._totals[scope] = self._totals.get(scope, 0.0) + units

    def spent(self, scope: str) -> float:
        """Units in the current window of a scope ("gmail:user:EMAIL", "calendar:project")."""
        with self._lock:
            window = self.limits.window_s if self.limits else 60.0
            return self._spent(scope, self._clock(), window)

    def _spent(self, scope: str, now: float, window_s: float) -> float:
        spend = self._spend.get(scope)
        if not spend:
            return 0.0
        while spend and spend[0][0] <= now - window_s:
            _, units = spend.popleft()
            self._totals[scope] -= units
        return self._totals[scope]

    def _free_at(
        self, scope: str, now: float, limits: QuotaLimits, limit: float, units: float
    ) -> float:
        """Seconds until `units` fit in the scope (for the message's "Retry after")."""
        total = self._totals.get(scope, 0.0)
        for at, spent in self._spend.get(scope, ()):
            total -= spent
            if total + units <= limit:
                return max(0.0, at + limits.window_s - now)
        return limits.window_s


def quota_exceeded(reason: str, retry_in_s: float) -> errors.ApiError:
    """Google's 429: usageLimits domain, RESOURCE_EXHAUSTED, "Retry after <time>" in the text."""
    at = datetime.now(UTC) + timedelta(seconds=retry_in_s)
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    per_user = reason == "userRateLimitExceeded"
    text = "User-rate limit exceeded" if per_user else "Rate Limit Exceeded"
    return errors.ApiError(429, reason, f"{text}.  Retry after {stamp}")
