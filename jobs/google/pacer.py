"""Gmail quota pacing: one token bucket per account in Postgres, shared by every worker."""

from __future__ import annotations

import logging
import time

from django.db import connection

from jobs.config import get_config
from jobs.errors import TransientError
from jobs.models import QuotaBucket

logger = logging.getLogger(__name__)

# Gmail quota units per call (developers.google.com/gmail/api/reference/quota).
# Calendar calls are absent: they cost nothing against the Gmail bucket.
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
}
_TAKE_SQL = """
INSERT INTO {table} AS bucket (account_id, tokens, refilled_at)
VALUES (%(account)s, %(capacity)s - %(units)s, clock_timestamp())
ON CONFLICT (account_id) DO UPDATE SET
    tokens = LEAST(
        %(capacity)s,
        bucket.tokens
        + GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - bucket.refilled_at)) * %(rate)s
    ) - %(units)s,
    refilled_at = clock_timestamp()
RETURNING tokens
"""
_REFUND_SQL = "UPDATE {table} SET tokens = tokens + %(units)s WHERE account_id = %(account)s"


def cost(method_id: str) -> int:
    """Gmail quota units one call of `method_id` costs (0 for anything not Gmail)."""
    if method_id in COSTS:
        return COSTS[method_id]
    return 5 if method_id.startswith("gmail.") else 0


def take(account_id: int, units: int) -> float:
    """Reserve `units` from the account's bucket; sleep until they are covered. Returns the wait.

    One atomic upsert refills by elapsed time, caps at capacity and subtracts `units`, so
    concurrent workers queue behind each other's reservations and never overdraw. Call it
    outside a transaction: inside one the row lock would be held until commit.
    """
    if units <= 0:
        return 0.0
    config = get_config()
    capacity = float(config.gmail_quota_units_per_minute)
    rate = capacity / 60.0
    params = {"account": account_id, "units": float(units), "capacity": capacity, "rate": rate}
    table = connection.ops.quote_name(QuotaBucket._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(_TAKE_SQL.format(table=table), params)
        (tokens,) = cursor.fetchone()
    if tokens >= 0:
        return 0.0
    wait = -tokens / rate
    # A longer wait goes back to the job engine as a retry instead of holding a worker.
    if wait > config.google_retry_after_cap_s:
        with connection.cursor() as cursor:
            cursor.execute(_REFUND_SQL.format(table=table), params)
        raise TransientError(
            f"Gmail quota for account {account_id} exhausted for {wait:.0f}s", retry_after=wait
        )
    logger.debug("account %s waits %.2fs for %d Gmail quota units", account_id, wait, units)
    time.sleep(wait)
    return wait
