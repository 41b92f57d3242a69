"""Fault injection: make chosen routes fail, slow down or expire, a bounded number of times."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from google_emulator import errors

SPEC_HELP = """\
Fault spec: comma-separated rules, each ROUTE=KIND[xTIMES][:KEY=VALUE...]
  ROUTE  a Google method id (gmail.users.messages.get, gmail.users.messages.list,
         gmail.users.history.list, gmail.users.getProfile, calendar.calendarList.list,
         calendar.events.list, oauth.token, ...) or "batch" (the batch HTTP request itself;
         parts inside a batch match their own route)
  KIND   400 | 401 | 403 | 404 | 410 | 429 | 500 | 503 | invalid_grant | delay
         (404 on gmail.users.history.list is Gmail's expired startHistoryId,
          410 on calendar.events.list is Calendar's fullSyncRequired)
  xTIMES how many matching requests fail (default: every one)
  KEYS   retry_after=SECONDS (Retry-After header), reason=REASON (403/429 error reason,
         e.g. userRateLimitExceeded), after=N (let the first N matches through),
         seconds=SECONDS (delay length; required for delay)
Example: gmail.users.messages.get=429x3:retry_after=2,calendar.events.list=503x1,
         oauth.token=invalid_grant,gmail.users.messages.list=delay:seconds=5"""

_STATUSES = frozenset({400, 401, 403, 404, 410, 429, 500, 503})
_OPTION_TYPES = {"retry_after": float, "reason": str, "after": int, "seconds": float}


@dataclass(eq=False)
class FaultRule:
    """One injected fault; counts the requests it has seen and hit."""

    route: str
    status: int | str | None
    times: int | None = None
    after: int = 0
    retry_after: float | None = None
    reason: str | None = None
    delay_s: float = 0.0
    seen: int = 0
    hits: int = 0

    def __str__(self) -> str:
        """The rule in --faults spec form."""
        kind = "delay" if self.status is None else str(self.status)
        options = {
            "retry_after": self.retry_after,
            "reason": self.reason,
            "after": self.after or None,
            "seconds": self.delay_s or None,
        }
        text = f"{self.route}={kind}" + (f"x{self.times}" if self.times is not None else "")
        return text + "".join(
            f":{k}={v:g}" if isinstance(v, float) else f":{k}={v}"
            for k, v in options.items()
            if v is not None
        )

    def take(self) -> bool:
        """Count one matching request; True when this rule fires for it."""
        self.seen += 1
        if self.seen <= self.after or (self.times is not None and self.hits >= self.times):
            return False
        self.hits += 1
        return True

    def error(self) -> errors.ApiError | None:
        """The error this rule answers with, or None for a pure delay."""
        if self.status is None:
            return None
        if self.route == "oauth.token":
            return _oauth_error(self.status)
        return _api_error(self.status, self.reason, self.retry_after)


def _oauth_error(status: int | str) -> errors.ApiError:
    if status == "invalid_grant" or status == 400:
        return errors.invalid_grant()
    # google-auth retries these (it reads the OAuth error code, not only the status).
    return errors.OAuthError(int(status), "internal_failure", "Internal failure")


def _api_error(status: int | str, reason: str | None, retry_after: float | None) -> errors.ApiError:
    if status in (403, 429):
        return errors.rate_limited(int(status), reason, retry_after)
    if status in (500, 503):
        return errors.server_error(int(status), retry_after)
    if status == 410:
        return errors.sync_token_expired()
    if status == 401:
        return errors.unauthenticated()
    if status == 404:
        return errors.not_found()
    return errors.invalid_argument(reason or "Invalid request")


class FaultSet:
    """The rules in force; thread-safe, consulted once per routed request."""

    def __init__(self, routes: Iterable[str]) -> None:
        self._routes = frozenset(routes)
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def add(
        self,
        route: str,
        status: int | str = 429,
        *,
        times: int | None = None,
        after: int = 0,
        retry_after: float | None = None,
        reason: str | None = None,
    ) -> FaultRule:
        """Answer `times` matching requests (None: all) with an error status or invalid_grant."""
        if status not in _STATUSES and status != "invalid_grant":
            raise ValueError(f"unsupported fault status {status!r}")
        if status == "invalid_grant" and route != "oauth.token":
            raise ValueError("invalid_grant only applies to oauth.token")
        rule = FaultRule(route, status, times, after, retry_after, reason)
        return self._append(rule)

    def add_delay(
        self, route: str, seconds: float, *, times: int | None = None, after: int = 0
    ) -> FaultRule:
        """Sleep `seconds` before answering matching requests (to trip client timeouts)."""
        return self._append(FaultRule(route, None, times, after, delay_s=seconds))

    def add_spec(self, spec: str) -> list[FaultRule]:
        """Add every rule of a compact spec (see SPEC_HELP); ValueError on bad input."""
        return [self._add_parsed(text) for text in spec.split(",") if text.strip()]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def match(self, route: str) -> FaultRule | None:
        """The first rule firing for this request; every rule for the route counts it."""
        with self._lock:
            fired = [rule for rule in self._rules if rule.route == route and rule.take()]
        return fired[0] if fired else None

    def _append(self, rule: FaultRule) -> FaultRule:
        if rule.route not in self._routes:
            raise ValueError(
                f"unknown route {rule.route!r}; known: {', '.join(sorted(self._routes))}"
            )
        if (rule.times is not None and rule.times < 0) or rule.after < 0:
            raise ValueError("times and after must not be negative")
        with self._lock:
            self._rules.append(rule)
        return rule

    def _add_parsed(self, text: str) -> FaultRule:
        route, kind, times, options = _parse_rule(text.strip())
        after = int(options.pop("after", 0))
        if kind == "delay":
            if "seconds" not in options:
                raise ValueError(f"{text!r}: delay needs :seconds=N")
            return self.add_delay(route, float(options["seconds"]), times=times, after=after)
        if "seconds" in options:
            raise ValueError(f"{text!r}: seconds only applies to delay")
        status: int | str = int(kind) if kind.isdigit() else kind
        return self.add(
            route,
            status,
            times=times,
            after=after,
            retry_after=options.get("retry_after"),
            reason=options.get("reason"),
        )


def _parse_rule(text: str) -> tuple[str, str, int | None, dict]:
    route, sep, rest = text.partition("=")
    if not sep or not route or not rest:
        raise ValueError(f"{text!r}: expected ROUTE=KIND")
    head, *option_texts = rest.split(":")
    kind, _, times_text = head.partition("x")
    if times_text and not times_text.isdigit():
        raise ValueError(f"{text!r}: TIMES must be a whole number")
    return (
        route.strip(),
        kind,
        int(times_text) if times_text else None,
        _parse_options(text, option_texts),
    )


def _parse_options(text: str, option_texts: list[str]) -> dict:
    options: dict = {}
    for option in option_texts:
        key, sep, value = option.partition("=")
        if not sep or key not in _OPTION_TYPES:
            raise ValueError(f"{text!r}: unknown option {option!r}")
        try:
            options[key] = _OPTION_TYPES[key](value)
        except ValueError:
            raise ValueError(f"{text!r}: bad value for {key}") from None
    return options
