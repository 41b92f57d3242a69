"""Fault injection: make chosen routes fail, slow down or expire, a bounded number of times."""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from google_emulator import errors

SPEC_HELP = """\
Fault spec: comma-separated rules, each a burst or a rate.
  Burst: ROUTE=KIND[xTIMES][:KEY=VALUE...]
  Rate:  ROUTE=PERCENT%:KIND[,KIND...][:KEY=VALUE...]  (each matching request fails with
         probability PERCENT, with one of the KINDs picked at random; --fault-seed makes
         the draw reproducible)
  ROUTE  a Google method id (gmail.users.messages.get, gmail.users.messages.list,
         gmail.users.history.list, gmail.users.getProfile, calendar.calendarList.list,
         calendar.events.list, oauth.token, ...), or its unique tail (messages.get,
         events.list), or "batch" (the batch HTTP request itself; parts inside a batch
         match their own route)
  KIND   400 | 401 | 403 | 404 | 410 | 429 | 500 | 503 | invalid_grant | delay
         | reset (the connection is dropped without an answer: the whole HTTP request,
           even from inside a batch) | stall (nothing is answered for :seconds=, default
           60, then the connection is dropped: trips client timeouts)
         (404 on gmail.users.history.list is Gmail's expired startHistoryId,
          410 on calendar.events.list is Calendar's fullSyncRequired)
  xTIMES how many matching requests fail (default: every one)
  KEYS   retry_after=SECONDS (Retry-After header), reason=REASON (403/429 error reason,
         e.g. userRateLimitExceeded), after=N (let the first N matches through),
         seconds=SECONDS (delay length, required for delay; stall length)
Example: gmail.users.messages.get=429x3:retry_after=2,calendar.events.list=503x1,
         oauth.token=invalid_grant,gmail.users.messages.list=delay:seconds=5,
         messages.get=30%:429,500,503,reset,stall:seconds=3"""

_STATUSES = frozenset({400, 401, 403, 404, 410, 429, 500, 503})
_DISCONNECTS = frozenset({"reset", "stall"})
DEFAULT_STALL_S = 60.0
_OPTION_TYPES = {"retry_after": float, "reason": str, "after": int, "seconds": float}


class Disconnect(Exception):
    """Answer nothing: drop the connection (after `stall_s`, for a stall)."""

    def __init__(self, kind: str, stall_s: float = 0.0) -> None:
        super().__init__(kind)
        self.kind = kind
        self.stall_s = stall_s


@dataclass(eq=False)
class FaultRule:
    """One injected fault; counts the requests it has seen and hit.

    A burst rule (probability None) fails `times` matching requests after the first `after`
    with `status`; a rate rule fails each matching request with `probability`, with one of
    `kinds` drawn by the fault set's seeded generator.
    """

    route: str
    status: int | str | None
    times: int | None = None
    after: int = 0
    retry_after: float | None = None
    reason: str | None = None
    delay_s: float = 0.0
    seen: int = 0
    hits: int = 0
    probability: float | None = None
    kinds: tuple[int | str, ...] = ()
    # Only requests whose path contains this (one message id, one calendar): a poison item.
    path_contains: str | None = None
    # How many requests failed with each kind ("delay" for a pure delay): the fault mix.
    kind_hits: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        """The rule in --faults spec form."""
        options = {
            "retry_after": self.retry_after,
            "reason": self.reason,
            "after": self.after or None,
            "seconds": self.delay_s or None,
        }
        if self.probability is not None:
            percent = f"{self.probability * 100:g}%"
            text = f"{self.route}={percent}:" + ",".join(str(kind) for kind in self.kinds)
        else:
            kind = "delay" if self.status is None else str(self.status)
            text = f"{self.route}={kind}" + (f"x{self.times}" if self.times is not None else "")
        return text + "".join(
            f":{k}={v:g}" if isinstance(v, float) else f":{k}={v}"
            for k, v in options.items()
            if v is not None
        )

    def take(self, rng: random.Random | None = None) -> int | str | bool | None:
        """Count one matching request; False when the rule lets it through, else the kind
        it fails with (a status, invalid_grant, reset, stall; None for a pure delay)."""
        self.seen += 1
        if self.seen <= self.after or (self.times is not None and self.hits >= self.times):
            return False
        if self.probability is not None:
            draw = rng or random.Random()
            if draw.random() >= self.probability:
                return False
            self.hits += 1
            kind = draw.choice(self.kinds)
            self.kind_hits[str(kind)] += 1
            return kind
        self.hits += 1
        self.kind_hits["delay" if self.status is None else str(self.status)] += 1
        return self.status

    def error(self, kind: int | str | None = None) -> errors.ApiError | None:
        """The error this rule answers with (for `kind`, default its status), None for a delay.

        Raises Disconnect for reset and stall."""
        kind = self.status if kind is None else kind
        if kind is None:
            return None
        if kind in _DISCONNECTS:
            stall = self.delay_s or DEFAULT_STALL_S if kind == "stall" else 0.0
            raise Disconnect(str(kind), stall)
        if self.route == "oauth.token":
            return _oauth_error(kind)
        return _api_error(kind, self.reason, self.retry_after)


@dataclass(frozen=True)
class FaultHit:
    """A rule firing for one request, with the kind it fired with."""

    rule: FaultRule
    kind: int | str | None

    @property
    def delay_s(self) -> float:
        """How long to wait before answering (delay rules only; a stall waits in error())."""
        return self.rule.delay_s if self.kind is None else 0.0

    def error(self) -> errors.ApiError | None:
        return self.rule.error(self.kind) if self.kind is not None else None


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
    """The rules in force; thread-safe, consulted once per routed request.

    Rate rules draw from one generator seeded with `seed`, so a run is reproducible (given the
    same order of requests).
    """

    def __init__(self, routes: Iterable[str], *, seed: int = 0) -> None:
        self._routes = frozenset(routes)
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def kind_hits(self) -> dict[str, dict[str, int]]:
        """Injected faults so far: {route: {kind: count}} over every rule."""
        totals: dict[str, Counter[str]] = {}
        for rule in self.rules:
            totals.setdefault(rule.route, Counter()).update(rule.kind_hits)
        return {route: dict(kinds) for route, kinds in totals.items() if kinds}

    def seed(self, seed: int) -> None:
        """Restart the rate rules' random draws from `seed`."""
        with self._lock:
            self._rng = random.Random(seed)

    def add(
        self,
        route: str,
        status: int | str = 429,
        *,
        times: int | None = None,
        after: int = 0,
        retry_after: float | None = None,
        reason: str | None = None,
        seconds: float = 0.0,
        path_contains: str | None = None,
    ) -> FaultRule:
        """Answer `times` matching requests (None: all) with an error status, invalid_grant,
        reset or stall (`seconds` long); with `path_contains`, only requests whose path holds
        it (one message id: a poison item)."""
        _check_kind(route, status)
        rule = FaultRule(route, status, times, after, retry_after, reason, delay_s=seconds)
        rule.path_contains = path_contains
        return self._append(rule)

    def add_rate(
        self,
        route: str,
        percent: float,
        kinds: Iterable[int | str],
        *,
        after: int = 0,
        retry_after: float | None = None,
        reason: str | None = None,
        seconds: float = 0.0,
    ) -> FaultRule:
        """Fail `percent` % of matching requests, each with one of `kinds` drawn at random."""
        kinds = tuple(kinds)
        if not 0 < percent <= 100:
            raise ValueError(f"percent must be in (0, 100], got {percent:g}")
        if not kinds:
            raise ValueError("a rate rule needs at least one kind")
        for kind in kinds:
            _check_kind(route, kind)
        rule = FaultRule(
            route,
            None,
            None,
            after,
            retry_after,
            reason,
            delay_s=seconds,
            probability=percent / 100,
            kinds=kinds,
        )
        return self._append(rule)

    def add_delay(
        self, route: str, seconds: float, *, times: int | None = None, after: int = 0
    ) -> FaultRule:
        """Sleep `seconds` before answering matching requests (to trip client timeouts)."""
        return self._append(FaultRule(route, None, times, after, delay_s=seconds))

    def add_spec(self, spec: str) -> list[FaultRule]:
        """Add every rule of a compact spec (see SPEC_HELP); ValueError on bad input."""
        return [self._add_parsed(text) for text in _split_rules(spec)]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def match(self, route: str, path: str = "") -> FaultHit | None:
        """The first rule firing for this request; every rule for the route counts it."""
        with self._lock:
            fired = []
            for rule in self._rules:
                if rule.route == route and (
                    rule.path_contains is None or rule.path_contains in path
                ):
                    kind = rule.take(self._rng)
                    if kind is not False:
                        fired.append(FaultHit(rule, kind))
        return fired[0] if fired else None

    def _append(self, rule: FaultRule) -> FaultRule:
        rule.route = self._resolve(rule.route)
        if (rule.times is not None and rule.times < 0) or rule.after < 0:
            raise ValueError("times and after must not be negative")
        with self._lock:
            self._rules.append(rule)
        return rule

    def _resolve(self, route: str) -> str:
        """A route id, or the one route whose id ends with ".<route>" (messages.get)."""
        if route in self._routes:
            return route
        tails = [k for k in self._routes if "." in route and k.endswith("." + route)]
        if len(tails) == 1:
            return tails[0]
        raise ValueError(f"unknown route {route!r}; known: {', '.join(sorted(self._routes))}")

    def _add_parsed(self, text: str) -> FaultRule:
        route, kind, times, options = _parse_rule(text.strip())
        after = int(options.pop("after", 0))
        if "%" in kind:
            percent_text, _, kinds_text = kind.partition("%")
            try:
                percent = float(percent_text)
            except ValueError:
                raise ValueError(f"{text!r}: PERCENT must be a number") from None
            kinds = [_kind(k.strip()) for k in kinds_text.split(",") if k.strip()]
            return self.add_rate(
                route,
                percent,
                kinds,
                after=after,
                retry_after=options.get("retry_after"),
                reason=options.get("reason"),
                seconds=options.get("seconds", 0.0),
            )
        if kind == "delay":
            if "seconds" not in options:
                raise ValueError(f"{text!r}: delay needs :seconds=N")
            return self.add_delay(route, float(options["seconds"]), times=times, after=after)
        if "seconds" in options and kind != "stall":
            raise ValueError(f"{text!r}: seconds only applies to delay and stall")
        return self.add(
            route,
            _kind(kind),
            times=times,
            after=after,
            retry_after=options.get("retry_after"),
            reason=options.get("reason"),
            seconds=options.get("seconds", 0.0),
        )


def _kind(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _check_kind(route: str, kind: int | str) -> None:
    if kind not in _STATUSES and kind not in _DISCONNECTS and kind != "invalid_grant":
        raise ValueError(f"unsupported fault status {kind!r}")
    if kind == "invalid_grant" and not route.endswith("oauth.token"):
        raise ValueError("invalid_grant only applies to oauth.token")


def _split_rules(spec: str) -> list[str]:
    """Split at the commas between rules; a comma inside a rate rule's KIND list continues it
    (a new rule starts with ROUTE=, a route being letters, digits, dots and underscores)."""
    rules: list[str] = []
    for piece in spec.split(","):
        if not piece.strip():
            continue
        starts_rule = re.match(r"\s*[\w.]+=", piece) is not None
        if rules and not starts_rule and "%" in rules[-1].split(":", 1)[0]:
            rules[-1] += "," + piece
        else:
            rules.append(piece)
    return rules


def _parse_rule(text: str) -> tuple[str, str, int | None, dict]:
    route, sep, rest = text.partition("=")
    if not sep or not route or not rest:
        raise ValueError(f"{text!r}: expected ROUTE=KIND")
    head, *option_texts = rest.split(":")
    if head.endswith("%"):
        # PERCENT%:KIND[,KIND...]: the kinds are the first segment after the percentage.
        if not option_texts:
            raise ValueError(f"{text!r}: expected ROUTE=PERCENT%:KIND[,KIND...]")
        kinds, *option_texts = option_texts
        return route.strip(), f"{head}{kinds}", None, _parse_options(text, option_texts)
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
