"""Google quota pacing: every per-minute limit held over a sliding window, shared in Postgres.

Google counts its Workspace API quotas over a sliding one-minute window (2026 limits for a
Cloud project created after 2026-05-01): Gmail 6,000 quota units per user and 1,200,000 per
project, Calendar 600 requests per user and 10,000 per project. Each limit is a *scope*; a
call is admitted only when, for every scope it counts against, the units spent over the last
`quota_window_s` plus its own stay within the limit. Admitted calls are recorded as
QuotaUsage rows at the database clock, so every worker on every host sees the same spend.

A reservation is one short transaction of two statements: advisory locks on its scopes (in a
fixed order), then one statement that prunes the scopes' expired rows, computes when the call
would fit and, if it fits now, records it. A call that does not fit sleeps until it would (the
time the oldest blocking spend leaves the window) and tries again; a wait longer than
`google_retry_after_cap_s` becomes a TransientError with retry_after for the job engine.
Reservations are never placed in the future, so one account queued behind its own limit never
delays another account's calls.

Background work (`priority="background"`, the backfill) also counts against a scope of its
own whose limit is `quota_background_share` of the per-user limit: it can never take more than
that share, and incremental syncs always find the rest.

Every limit also holds over `quota_burst_window_s` (default 15 s) at 1.5 times its even rate
(2,177 of the 6,000 units per 62 s): the throughput is the same, and a busy account waits at
most ~21 s between batches. Without it a long sync would spend a minute's quota in seconds and
then wait most of a minute, beyond google_retry_after_cap_s, handing its job back to the
engine as a retry (each costing an attempt) every minute.

Yielding: a caller that can stop and continue later (a Gmail sync between batches, a Calendar
sync or backfill before any call, a reconcile job where its continuation loses nothing, a
push_renew job) wraps its calls in `deferring(should_defer)`; a wait longer than
`quota_yield_after_s` for which `should_defer()` says other work waits for this worker then
raises QuotaDeferred (retry_after = the wait) instead of sleeping, so the worker serves another
account meanwhile.
"""

from __future__ import annotations

import itertools
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from jobs.config import PipelineConfig, get_config
from jobs.errors import PermanentError, TransientError
from jobs.models import QuotaDaily, QuotaUsage
from jobs.models.quota import QUOTA_DAILY_KEEP_DAYS

logger = logging.getLogger(__name__)

PRIORITIES = ("normal", "background")
# Gmail quota units per call (developers.google.com/workspace/gmail/api/reference/quota).
# Calendar's quota counts requests: every Calendar call (each part of a batch) costs 1.
COSTS: dict[str, int] = {
    "gmail.users.messages.list": 5,
    "gmail.users.messages.get": 5,
    "gmail.users.history.list": 2,
    "gmail.users.getProfile": 1,
    "gmail.users.labels.list": 1,
    "gmail.users.labels.get": 1,
    "gmail.users.threads.list": 10,
    "gmail.users.threads.get": 10,
    "gmail.users.settings.sendAs.list": 1,
    "gmail.users.watch": 100,
    "gmail.users.stop": 50,
}
# The short window (quota_burst_window_s) admits this many times the limit's even rate: batches
# fit whatever their size, the full window stays the one that binds, and once it is full the
# next call waits at most window * (1 - 1 / BURST_HEADROOM), ~21 s of 62, below the retry cap.
BURST_HEADROOM = 1.5
# Class id of the pacer's advisory locks (the second key is a hash of the scope).
_LOCK_CLASS = 0x51_07A
# A few hundredths of a second more than computed: the blocking spend has surely left.
_WAKE_MARGIN_S = 0.02
# Every this many reservations a process also prunes expired rows of scopes nobody uses now.
_SWEEP_EVERY = 200
_reservations = itertools.count(1)

_LOCK_SQL = "SELECT pg_advisory_xact_lock(%s, k) FROM unnest(%s::int[]) AS k"
_RESERVE_SQL = """
WITH now AS (SELECT clock_timestamp() AS at),
spec AS (
    SELECT * FROM unnest(%(scopes)s::text[], %(limits)s::float8[], %(windows)s::float8[])
        AS s(scope, lim, win)
),
pruned AS (
    DELETE FROM {table}
    WHERE scope = ANY(%(scopes)s::text[])
      AND spent_at <= (SELECT at FROM now) - make_interval(secs => %(window)s)
),
live AS (
    SELECT s.scope, s.lim, s.win, u.spent_at,
           SUM(u.units) OVER (
               PARTITION BY s.scope, s.win ORDER BY u.spent_at DESC, u.id DESC
           ) AS newer_or_same
    FROM spec s
    JOIN {table} u
      ON u.scope = s.scope
     AND u.spent_at > (SELECT at FROM now) - make_interval(secs => s.win)
),
fits AS (
    -- A spend whose newer neighbours plus itself leave no room for these units must first
    -- leave its window: the call fits once the latest such spend is that window old.
    SELECT GREATEST(
        (SELECT at FROM now),
        MAX(l.spent_at + make_interval(secs => l.win))
            FILTER (WHERE l.newer_or_same > l.lim - %(units)s)
    ) AS at
    FROM live l
),
taken AS (
    INSERT INTO {table} (scope, spent_at, units)
    SELECT DISTINCT s.scope, (SELECT at FROM now), %(units)s::float8
    FROM spec s
    WHERE (SELECT at FROM fits) <= (SELECT at FROM now)
    RETURNING 1
),
daily AS (
    -- The day's total per scope (QuotaDaily), in the same statement: usage rows leave
    -- after the window, so "units spent today" needs a row of its own.
    INSERT INTO {daily} (scope, day, units)
    SELECT DISTINCT s.scope, ((SELECT at FROM now) AT TIME ZONE 'UTC')::date, %(units)s::float8
    FROM spec s
    WHERE (SELECT at FROM fits) <= (SELECT at FROM now)
    ON CONFLICT (scope, day) DO UPDATE SET units = {daily}.units + EXCLUDED.units
    RETURNING 1
)
SELECT EXTRACT(EPOCH FROM (SELECT at FROM fits) - (SELECT at FROM now))::float8,
       (SELECT count(*) FROM taken)
"""
_SWEEP_SQL = """
DELETE FROM {table} WHERE id IN (
    SELECT id FROM {table}
    WHERE spent_at <= clock_timestamp() - make_interval(secs => %(window)s)
    LIMIT 10000 FOR UPDATE SKIP LOCKED
)
"""
_SWEEP_DAILY_SQL = """
DELETE FROM {daily} WHERE day < (clock_timestamp() AT TIME ZONE 'UTC')::date - %(keep)s::int
"""


class QuotaDeferred(TransientError):
    """The quota wait exceeds quota_yield_after_s and other work waits for this worker: the
    caller (inside `deferring`) stops and continues after `retry_after` seconds. Nothing was
    reserved. A caller that does not catch it sees a TransientError with retry_after."""


_should_defer: ContextVar[Callable[[], bool] | None] = ContextVar("quota_defer", default=None)


@contextmanager
def deferring(should_defer: Callable[[], bool]) -> Iterator[None]:
    """Within the block, take() raises QuotaDeferred instead of sleeping longer than
    quota_yield_after_s when `should_defer()` (asked only then) is true."""
    token = _should_defer.set(should_defer)
    try:
        yield
    finally:
        _should_defer.reset(token)


@dataclass(frozen=True, slots=True)
class Scope:
    """One limit: its key in QuotaUsage and how much it allows over `window_s`."""

    key: str
    limit: float
    window_s: float


def api_of(method_id: str) -> str | None:
    """ "gmail" or "calendar" for a Google method id; None for calls no quota counts (OAuth)."""
    if method_id.startswith("gmail."):
        return "gmail"
    if method_id.startswith("calendar."):
        return "calendar"
    return None


def cost(method_id: str) -> int:
    """What one call of `method_id` counts against its API's quota (units or requests)."""
    api = api_of(method_id)
    if api == "gmail":
        return COSTS.get(method_id, 5)
    return 1 if api == "calendar" else 0


def scopes(
    mailbox: int | str, api: str, priority: str = "normal", config: PipelineConfig | None = None
) -> list[Scope]:
    """The limits a call of `api` for the mailbox counts against, for this priority.

    Google counts a per-user limit per mailbox (the authenticated user), so the client passes
    the account's address: one mailbox connected by two CRM users still has one quota.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, got {priority!r}")
    config = config or get_config()
    if api == "gmail":
        user, project = (
            config.gmail_quota_units_per_user_per_minute,
            config.gmail_quota_units_per_project_per_minute,
        )
    elif api == "calendar":
        user, project = (
            config.calendar_requests_per_user_per_minute,
            config.calendar_requests_per_project_per_minute,
        )
    else:
        raise ValueError(f"no quota for api {api!r}")
    limits = [(f"{api}:project", float(project)), (f"{api}:user:{mailbox}", float(user))]
    if priority == "background":
        share = float(user) * config.quota_background_share
        limits.append((f"{api}:user:{mailbox}:background", share))
    window, burst = config.quota_window_s, config.quota_burst_window_s
    found = [Scope(key, limit, window) for key, limit in limits]
    if 0 < burst < window:
        # Each limit also holds over the shorter window, at BURST_HEADROOM times its even rate:
        # a sync no longer spends a minute's quota in seconds and then waits most of a minute.
        short = burst / window * BURST_HEADROOM
        found += [Scope(key, limit * short, burst) for key, limit in limits]
    return found


def largest_reservation(mailbox: int | str, api: str, priority: str = "normal") -> float:
    """The most one reservation may take (the smallest limit it counts against)."""
    return min(scope.limit for scope in scopes(mailbox, api, priority))


def take(
    mailbox: int | str, units: float, *, api: str = "gmail", priority: str = "normal"
) -> float:
    """Admit `units` of `api` quota for the mailbox (the account's address), sleeping until every
    limit allows them.

    Returns the seconds waited. Raises TransientError(retry_after=...) when the wait would
    exceed google_retry_after_cap_s (the job engine retries later instead of holding a worker),
    and PermanentError when `units` exceed a limit outright (no wait can admit them). Call it
    outside a transaction: inside one the locks and the recorded spend would stay private
    until commit.
    """
    if units <= 0:
        return 0.0
    config = get_config()
    found = scopes(mailbox, api, priority, config)
    smallest = min(found, key=lambda scope: scope.limit)
    if units > smallest.limit:
        raise PermanentError(
            f"one call of {units:g} {api} quota units exceeds the limit {smallest.key} "
            f"({smallest.limit:g} per window): raise the limit or send smaller batches"
        )
    waited = 0.0
    while True:
        wait = _reserve(found, float(units))
        if wait <= 0:
            if next(_reservations) % _SWEEP_EVERY == 0:
                sweep(config.quota_window_s)
            return waited
        if wait > config.quota_yield_after_s:
            should_defer = _should_defer.get()
            if should_defer is not None and should_defer():
                raise QuotaDeferred(
                    f"{api} quota for {mailbox} frees in {wait:.1f}s; other work waits",
                    retry_after=wait,
                )
        if waited + wait > config.google_retry_after_cap_s:
            raise TransientError(
                f"{api} quota for {mailbox} exhausted for {wait:.0f}s",
                retry_after=wait,
            )
        logger.debug("%s waits %.2fs for %g %s quota", mailbox, wait, units, api)
        time.sleep(wait + _WAKE_MARGIN_S)
        waited += wait + _WAKE_MARGIN_S


def _reserve(found: list[Scope], units: float) -> float:
    """One attempt: record the spend and return 0, or record nothing and return the wait."""
    keys = [scope.key for scope in found]
    lock_ids = sorted({zlib.crc32(key.encode()) - 2**31 for key in keys})
    table = connection.ops.quote_name(QuotaUsage._meta.db_table)
    params: dict[str, Any] = {
        "scopes": keys,
        "limits": [scope.limit for scope in found],
        "windows": [scope.window_s for scope in found],
        "units": units,
        "window": max(scope.window_s for scope in found),
    }
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(_LOCK_SQL, [_LOCK_CLASS, lock_ids])
        cursor.execute(_RESERVE_SQL.format(table=table, daily=_daily_table()), params)
        wait, taken = cursor.fetchone()
    return 0.0 if taken else max(float(wait), 0.001)


def sweep(window_s: float | None = None) -> int:
    """Delete expired usage rows of every scope (rows of busy scopes go at each reservation),
    and daily totals older than QUOTA_DAILY_KEEP_DAYS."""
    window = get_config().quota_window_s if window_s is None else window_s
    table = connection.ops.quote_name(QuotaUsage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(_SWEEP_SQL.format(table=table), {"window": window})
        deleted = cursor.rowcount
        cursor.execute(
            _SWEEP_DAILY_SQL.format(daily=_daily_table()), {"keep": QUOTA_DAILY_KEEP_DAYS}
        )
        return deleted


def _daily_table() -> str:
    return connection.ops.quote_name(QuotaDaily._meta.db_table)


def spent(scope_key: str, window_s: float | None = None) -> float:
    """Units recorded for a scope over the last window (for status pages and tests)."""
    window = get_config().quota_window_s if window_s is None else window_s
    table = connection.ops.quote_name(QuotaUsage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COALESCE(SUM(units), 0) FROM {table} WHERE scope = %s "
            "AND spent_at > clock_timestamp() - make_interval(secs => %s)",
            [scope_key, window],
        )
        return float(cursor.fetchone()[0])
