"""Raw-event writes: one statement per chunk, with exact inserted / updated / skipped counts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection

from jobs.models import NormalizationStatus, RawEvent
from jobs.models.raw_event import source_id_fits
from jobs.normalization.text import db_safe


@dataclass(frozen=True, slots=True)
class RawItem:
    """One provider item as fetched: its id at the provider, when it happened, the payload."""

    source_id: str
    occurred_at: datetime | None
    payload: dict[str, Any]


@dataclass(slots=True)
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    # Source ids too long to store (jobs.models.raw_event.source_id_fits): not written, the
    # rest of the chunk is; the caller records them.
    rejected: list[str] = field(default_factory=list)

    def add(self, other: UpsertCounts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.skipped += other.skipped
        self.rejected += other.rejected


# A row that exists with the same payload is left alone (not even its batch changes), so a rerun
# is a no-op; a changed payload goes back to `pending` in the new batch. `xmax = 0` tells a
# fresh insert from an update; rows the WHERE filtered out return nothing (skipped).
_UPSERT = """
INSERT INTO {table} AS raw
       (user_id, account_id, provider, source_id, occurred_at, payload, batch_id, status, error,
        fetched_at, updated_at)
SELECT %(user_id)s, %(account_id)s, %(provider)s, item.source_id, item.occurred_at,
       item.payload::jsonb, %(batch_id)s, %(pending)s, '', now(), now()
  FROM unnest(%(source_ids)s::text[], %(occurred)s::timestamptz[], %(payloads)s::text[])
       AS item(source_id, occurred_at, payload)
    ON CONFLICT (user_id, provider, source_id) DO UPDATE
   SET payload = {payload}, occurred_at = COALESCE(EXCLUDED.occurred_at, raw.occurred_at),
       account_id = COALESCE(EXCLUDED.account_id, raw.account_id), status = %(pending)s,
       error = '', batch_id = EXCLUDED.batch_id, updated_at = now()
 WHERE raw.payload IS DISTINCT FROM {payload}
RETURNING (raw.xmax = 0) AS inserted
"""

# Same rules, for rows that must already exist (never inserts).
_UPDATE_EXISTING = """
UPDATE {table} AS raw
   SET payload = {payload}, occurred_at = COALESCE(item.occurred_at, raw.occurred_at),
       status = %(pending)s, error = '', batch_id = %(batch_id)s, updated_at = now()
  FROM unnest(%(source_ids)s::text[], %(occurred)s::timestamptz[], %(payloads)s::text[])
       AS item(source_id, occurred_at, payload)
 WHERE raw.user_id = %(user_id)s AND raw.provider = %(provider)s
   AND raw.source_id = item.source_id
   AND (%(account_id)s::bigint IS NULL OR raw.account_id = %(account_id)s)
   AND raw.payload IS DISTINCT FROM {payload}
"""


def raw_events_upsert(
    *,
    user_id: int,
    account_id: int | None,
    provider: str,
    batch_id: uuid.UUID,
    items: Sequence[RawItem],
    merge: bool = False,
) -> UpsertCounts:
    """Insert new items, update changed ones, skip identical ones: one statement for the chunk.

    With `merge`, a stored payload is updated key by key (jsonb `||`) instead of replaced, so a
    partial resource (a cancelled event's stub) keeps what was known before. A source id given
    twice counts once (the last wins); the extra copy counts as skipped. An item whose source
    id is too long to store is left out and named in `rejected`, so it fails alone.
    """
    rejected = [item for item in items if not source_id_fits(item.source_id)]
    if rejected:
        items = [item for item in items if source_id_fits(item.source_id)]
    unique = _last_per_source(items)
    rejected_ids = list(dict.fromkeys(item.source_id for item in rejected))
    if not unique:
        return UpsertCounts(skipped=len(items), rejected=rejected_ids)
    payload = "raw.payload || EXCLUDED.payload" if merge else "EXCLUDED.payload"
    sql = _UPSERT.format(table=RawEvent._meta.db_table, payload=payload)
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            _params(
                user_id=user_id,
                account_id=account_id,
                provider=provider,
                batch_id=batch_id,
                items=unique,
            ),
        )
        rows = cursor.fetchall()
    inserted = sum(1 for (was_inserted,) in rows if was_inserted)
    updated = len(rows) - inserted
    return UpsertCounts(
        inserted=inserted, updated=updated, skipped=len(items) - len(rows), rejected=rejected_ids
    )


def raw_events_update_existing(
    *,
    user_id: int,
    provider: str,
    batch_id: uuid.UUID,
    items: Sequence[RawItem],
    merge: bool = False,
    account_id: int | None = None,
) -> int:
    """Update stored rows whose payload changed (or merge keys into them); never inserts.

    For items that must not create a row of their own: a message that moved to the trash, a
    deletion marker. Only the rows of `account_id` when given (a change seen in one account's
    mailbox never touches another's). Returns how many rows changed.
    """
    unique = _last_per_source(items)
    if not unique:
        return 0
    payload = "raw.payload || item.payload::jsonb" if merge else "item.payload::jsonb"
    sql = _UPDATE_EXISTING.format(table=RawEvent._meta.db_table, payload=payload)
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            _params(
                user_id=user_id,
                account_id=account_id,
                provider=provider,
                batch_id=batch_id,
                items=unique,
            ),
        )
        return cursor.rowcount


def raw_events_latest_occurred_at(
    *, user_id: int, provider: str, account_id: int | None = None
) -> datetime | None:
    """The newest stored occurred_at for a user's provider, of one account when `account_id` is
    given (served by raw_event_account_recent_idx / raw_event_recent_idx)."""
    rows = RawEvent.objects.filter(user_id=user_id, provider=provider, occurred_at__isnull=False)
    if account_id is not None:
        rows = rows.filter(account_id=account_id)
    return rows.order_by("-occurred_at").values_list("occurred_at", flat=True).first()


def _last_per_source(items: Sequence[RawItem]) -> list[RawItem]:
    # ON CONFLICT cannot touch one row twice in a statement.
    return list({item.source_id: item for item in items}.values())


def _params(
    *,
    user_id: int,
    account_id: int | None,
    provider: str,
    batch_id: uuid.UUID,
    items: list[RawItem],
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "account_id": account_id,
        "provider": provider,
        "batch_id": batch_id,
        "pending": NormalizationStatus.PENDING.value,
        "source_ids": [item.source_id for item in items],
        "occurred": [item.occurred_at for item in items],
        "payloads": [_json(item.payload) for item in items],
    }


def _json(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in text or not _encodable(text):
        # jsonb refuses NUL and lone surrogates; such mail exists, so clean rather than fail.
        text = json.dumps(_clean(payload), ensure_ascii=False, separators=(",", ":"))
    return text


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return db_safe(value)
    if isinstance(value, dict):
        return {db_safe(str(key)): _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value
