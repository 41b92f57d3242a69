"""Normalization writes: pending raw events to interactions, one claimed chunk per transaction."""

from __future__ import annotations

import gc
import json
import threading
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import orjson
import psycopg
from django.db import connection, transaction
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import CharField
from psycopg.types.datetime import TimestamptzLoader
from psycopg.types.json import Jsonb

from jobs.config import get_config
from jobs.models import Interaction, NormalizationStatus, PendingRawEvent, Provider, RawEvent
from jobs.models.raw_event import source_id_fits, source_id_too_long
from jobs.normalization.calendar import parse_calendar_event
from jobs.normalization.gmail import parse_gmail_message
from jobs.normalization.selectors import account_addresses, raw_events_pending_exist
from jobs.normalization.text import db_safe
from jobs.normalization.types import (
    CALENDAR_ID_KEY,
    CALENDAR_TIME_ZONE_KEY,
    DELETED_KEY,
    NormalizationError,
    ParsedInteraction,
)

ERROR_TEXT_LIMIT = 2000
# orjson reads an integer beyond 64 bits as a float where json.loads keeps it exact. Such an
# integer is a run of 19+ digits after a separator; a payload with one (rare: Gmail's and
# Calendar's numbers are small, their ids strings) goes to json.loads. The check maps the text's
# bytes (translate: C speed; a regex takes longer than the decoding) to digits, separators and
# the rest.
_NUMBER_CLASSES = bytes(
    48 if 48 <= byte <= 57 else 32 if chr(byte) in ":,[ \t\r\n-" else 120 for byte in range(256)
)
_LONG_INTEGER = b" " + b"0" * 19
# Payloads longer than this (characters) skip orjson and its check (rare; see _loads).
_ORJSON_MAX_CHARS = 1_000_000

# psycopg's own timestamptz loader (its C implementation where installed), not Django's wrapper
_TIMESTAMPTZ_LOADER = (
    psycopg.adapters.get_loader(psycopg.postgres.types["timestamptz"].oid, psycopg.pq.Format.TEXT)
    or TimestamptzLoader
)

_INTERACTION = Interaction._meta.db_table
_RAW_EVENT = RawEvent._meta.db_table
# Column widths the parsers do not know about: a row that does not fit fails on its own instead
# of failing the chunk's single INSERT.
_MAX_LENGTHS = {
    field.name: field.max_length
    for field in Interaction._meta.concrete_fields
    if isinstance(field, CharField) and field.max_length
}

# Provider ids in unique or plain btree indexes (interaction_user_source_uniq,
# interaction_thread_idx): at most SOURCE_ID_MAX_LENGTH UTF-8 bytes.
_INDEXED_IDS = ("source_id", "thread_id")

_PENDING = PendingRawEvent._meta.db_table
# From the work list (PendingRawEvent, served by pending_raw_event_idx). SKIP LOCKED: two
# normalizers never take the same rows. Both rows are locked: a sync rewriting a claimed raw
# event waits for the chunk's commit (and then queues it again) instead of locking the raw
# event first and then waiting for its work-list row, which the chunk holds (a deadlock).
_CLAIM_SQL = f"""
SELECT r.id, r.account_id, r.source_id, r.payload, r.fetched_at
  FROM {_PENDING} AS q JOIN {_RAW_EVENT} AS r ON r.id = q.raw_event_id
 WHERE q.user_id = %(user_id)s AND q.provider = %(provider)s {{batch}}
       AND r.user_id = %(user_id)s
 LIMIT %(limit)s
   FOR UPDATE OF q, r SKIP LOCKED
"""
_CLAIM_ANY_SQL = _CLAIM_SQL.format(batch="")
_CLAIM_BATCH_SQL = _CLAIM_SQL.format(batch="AND q.batch_id = %(batch_id)s")
# The interaction columns a chunk writes from ParsedInteraction (metadata aside), with their types.
_COLUMNS = {
    "source": "text",
    "source_id": "text",
    "kind": "text",
    "occurred_at": "timestamptz",
    "occurred_at_estimated": "bool",
    "subject": "text",
    "body_text": "text",
    "thread_id": "text",
    "direction": "text",
}
_COLUMN_LIST = ", ".join(_COLUMNS)

# what an update may change: everything but the conflict key
_UPDATED_COLUMNS = (*(c for c in _COLUMNS if c not in ("source", "source_id")), "metadata")

# One statement per chunk: upsert the interactions (an unchanged row is not rewritten, so
# RETURNING yields exactly the inserted and updated ones; xmax = 0 tells a fresh insert) and
# record every claimed raw event's outcome, moving it into the normalizing batch when one is
# given (`into_batch`: the later stages find a batch's interactions by their raw events' batch);
# the raw-event trigger takes them off the work list. The outcome update changes no indexed column
# (status is in none; error is '' before and after for a success; the batch changes only for
# a raw event claimed outside its own batch): a HOT update, in room the table's fillfactor
# keeps free, that writes no index entry.
# The rows go as one jsonb array of objects (`_row_json`, encoded by orjson in C) read by
# jsonb_to_recordset: per-element array parameters are dumped by Python code, which took a
# tenth of a chunk's Python time, and the metadata arrives as jsonb, not text to parse again.
# The id arrays go as binary parameters (%b).
_WRITE_SQL = f"""
WITH written AS (
    INSERT INTO {_INTERACTION} AS t (
        user_id, {_COLUMN_LIST}, metadata, created_at, updated_at)
    SELECT %(user_id)s, {_COLUMN_LIST}, metadata, statement_timestamp(), statement_timestamp()
      FROM jsonb_to_recordset(%(rows)b)
           AS s({", ".join(f"{name} {kind}" for name, kind in _COLUMNS.items())}, metadata jsonb)
    ON CONFLICT (user_id, source, source_id) DO UPDATE
       SET {", ".join(f"{column} = EXCLUDED.{column}" for column in _UPDATED_COLUMNS)},
           updated_at = EXCLUDED.updated_at
     WHERE ({", ".join(f"t.{column}" for column in _UPDATED_COLUMNS)})
           IS DISTINCT FROM ({", ".join(f"EXCLUDED.{column}" for column in _UPDATED_COLUMNS)})
    RETURNING (xmax = 0) AS inserted
), outcome AS (
    UPDATE {_RAW_EVENT} AS r
       SET status = CASE WHEN r.id = ANY(%(failed_ids)b::int8[])
                         THEN '{NormalizationStatus.FAILED}'
                         ELSE '{NormalizationStatus.NORMALIZED}' END,
           error = COALESCE(
               (%(failed_errors)b::text[])[array_position(%(failed_ids)b::int8[], r.id)], ''),
           batch_id = COALESCE(%(into_batch)s::uuid, r.batch_id),
           updated_at = statement_timestamp()
     WHERE r.id = ANY(%(raw_ids)b::int8[]) AND r.user_id = %(user_id)s
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written
"""


@dataclass(slots=True)
class NormalizationReport:
    """What a normalization pass did; `stopped` means it ended early with raw events pending."""

    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    chunks: int = 0
    stopped: bool = False

    def add(self, other: NormalizationReport) -> None:
        for name in ("fetched", "inserted", "updated", "unchanged", "failed", "chunks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        """The counts under the metrics' key names (itemsSkipped = unchanged)."""
        return {
            "itemsFetched": self.fetched,
            "itemsInserted": self.inserted,
            "itemsSkipped": self.unchanged,
            "itemsUpdated": self.updated,
            "failed": self.failed,
        }


def raw_events_normalize(
    *,
    user_id: int,
    provider: str,
    batch_id: uuid.UUID | None = None,
    into_batch: uuid.UUID | None = None,
    account_id: int | None = None,
    chunk_size: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_chunk: Callable[[NormalizationReport], None] | None = None,
    fence: Callable[[], None] | None = None,
    lanes: int | None = None,
) -> NormalizationReport:
    """Normalize the user's pending raw events of `provider` (of `batch_id` only, when given).

    Works chunk by chunk, each chunk claimed and written in its own transaction, until none is
    left; `should_stop` is asked between chunks (the job's deadline), `on_chunk` gets each
    committed chunk's counts. `fence` (a job's `ctx.fence`) runs first in every chunk's
    transaction: it raises `LeaseLost` when the job is no longer this worker's, and nothing of
    that chunk is written. Rows another normalizer holds are skipped, not waited for.

    `into_batch` (the normalizing job's batch): every raw event normalized joins that batch, in
    the statement that records its outcome, so the stages that follow for the batch
    (extract_contacts, write_timeline, update_rollups: contacts.selectors.batch_interaction_ids)
    see the interactions of rows claimed outside their own batch (`batch_id` None: the pending
    sweep, renormalize). Without it, raw events keep their batch.

    `lanes` (default: the `normalize_lanes` setting) chunk loops run side by side, each on its
    own database connection (the caller's and helper threads'), so that one lane's Python work
    (decoding, parsing) overlaps another's writes; every chunk keeps its own transaction, fence
    and claim. Inside a transaction (a test's, a caller's) one lane runs, on the caller's
    connection: other connections would not see that transaction's rows.
    """
    config = get_config()
    chunk_size = chunk_size or config.normalize_chunk_size
    lanes = lanes or config.normalize_lanes
    addresses = account_addresses(user_id=user_id)
    if connection.in_atomic_block:
        # the lanes' own connections would not see this transaction's rows
        lanes = 1
    run = _Lanes(
        should_stop=should_stop,
        on_chunk=on_chunk,
        work=partial(
            raw_events_normalize_chunk,
            user_id=user_id,
            provider=provider,
            batch_id=batch_id,
            into_batch=into_batch,
            account_id=account_id,
            chunk_size=chunk_size,
            addresses=addresses,
            fence=fence,
            # one lane parses at a time, whole chunks: the lanes then take turns, one parsing
            # while the others' chunks are written, instead of parsing side by side (sharing
            # the interpreter) and then all waiting for the database together
            parsing_turn=threading.Lock() if lanes > 1 else None,
        ),
    )
    helpers = [
        threading.Thread(target=run.lane, args=(True,), name=f"normalize-lane-{n}", daemon=True)
        for n in range(1, lanes)
    ]
    for helper in helpers:
        helper.start()
    run.lane(False)
    for helper in helpers:
        helper.join()
    if run.error is not None:
        raise run.error
    if run.asked_to_stop:
        run.report.stopped = raw_events_pending_exist(
            user_id=user_id, provider=provider, batch_id=batch_id
        )
    return run.report


class _Lanes:
    """Chunk loops run side by side, each on its own connection (a helper thread's), so one
    lane parses its chunk while another's is written; SKIP LOCKED keeps their claims apart.

    Every lane stops, between chunks, once any lane found nothing left, `should_stop` said so,
    or a chunk raised (the first error is kept and raised by the caller once every lane has
    stopped: no lane writes after the job's outcome is decided). Counts, `on_chunk` and
    `should_stop` are taken under one lock, as the serial loop calls them.
    """

    def __init__(
        self,
        *,
        work: Callable[[], NormalizationReport],
        should_stop: Callable[[], bool] | None,
        on_chunk: Callable[[NormalizationReport], None] | None,
    ) -> None:
        self.work = work
        self.should_stop = should_stop
        self.on_chunk = on_chunk
        self.report = NormalizationReport()
        self.lock = threading.Lock()
        self.done = False
        self.asked_to_stop = False
        self.error: BaseException | None = None

    def lane(self, helper: bool) -> None:
        try:
            while not self.done:
                chunk = self.work()
                with self.lock:
                    if not chunk.fetched:
                        self.done = True
                        return
                    self.report.add(chunk)
                    if self.on_chunk is not None:
                        self.on_chunk(chunk)
                    if not self.done and self.should_stop is not None and self.should_stop():
                        self.done = self.asked_to_stop = True
        except BaseException as exc:  # raised by the caller, in its thread
            with self.lock:
                self.done = True
                if self.error is None:
                    self.error = exc
        finally:
            if helper:
                connection.close()  # this thread's own connection


def raw_events_normalize_chunk(
    *,
    user_id: int,
    provider: str,
    batch_id: uuid.UUID | None = None,
    into_batch: uuid.UUID | None = None,
    account_id: int | None = None,
    chunk_size: int,
    addresses: dict[int, frozenset[str]] | None = None,
    fence: Callable[[], None] | None = None,
    parsing_turn: AbstractContextManager[Any] | None = None,
) -> NormalizationReport:
    """Claim up to `chunk_size` pending raw events (FOR UPDATE SKIP LOCKED), parse and write them.

    Two statements whatever the chunk size (three with a `fence`, called first in the
    transaction: see raw_events_normalize); the parsing runs inside `parsing_turn` when given
    (the lanes' turn to parse). A payload the parser rejects (any exception) is
    marked failed with its error and never stops the others. Every claimed raw event joins
    `into_batch` when given (see raw_events_normalize).
    """
    if provider not in Provider.values:
        raise ValueError(f"unknown provider {provider!r}")
    if addresses is None:
        addresses = account_addresses(user_id=user_id)
    own_default = addresses.get(account_id) if account_id is not None else None
    if own_default is None:
        own_default = frozenset().union(*addresses.values())
    max_body_chars = get_config().max_body_chars
    parse = _PARSERS[provider]
    with transaction.atomic(), _cursor(claim_loaders=True) as cursor:
        if fence is not None:
            fence()
        cursor.execute(
            _CLAIM_BATCH_SQL if batch_id else _CLAIM_ANY_SQL,
            {"user_id": user_id, "provider": provider, "batch_id": batch_id, "limit": chunk_size},
        )
        claimed = cursor.fetchall()
        if not claimed:
            return NormalizationReport()
        rows: dict[tuple[str, str], bytes] = {}
        failed_ids: list[int] = []
        failed_errors: list[str] = []
        with parsing_turn or nullcontext(), _collector_paused():
            for raw_id, raw_account_id, source_id, payload, fetched_at in claimed:
                try:
                    parsed = parse(
                        _loads(payload),
                        source_id=source_id,
                        own_addresses=addresses.get(raw_account_id, own_default),
                        fetched_at=fetched_at,
                        max_body_chars=max_body_chars,
                    )
                    _check_fits(parsed)
                    row = _row_json(parsed)
                except Exception as exc:  # any parser failure is this payload's, not the chunk's
                    failed_ids.append(raw_id)
                    failed_errors.append(db_safe(f"{type(exc).__name__}: {exc}")[:ERROR_TEXT_LIMIT])
                    continue
                # two raw events naming the same interaction: one row, or the upsert would fail
                rows[(parsed.source, parsed.source_id)] = row
        params = _write_params(user_id, rows, [row[0] for row in claimed])
        params.update(into_batch=into_batch, failed_ids=failed_ids, failed_errors=failed_errors)
        cursor.execute(_WRITE_SQL, params)
        inserted, updated = cursor.fetchone()
    failed = len(failed_ids)
    return NormalizationReport(
        fetched=len(claimed),
        inserted=inserted,
        updated=updated,
        unchanged=len(claimed) - failed - inserted - updated,
        failed=failed,
        chunks=1,
    )


def raw_events_reset(
    *,
    user_id: int,
    providers: list[str],
    failed_only: bool = False,
    ids: Collection[int] | None = None,
) -> int:
    """Put the user's raw events of `providers` (only the failed ones, if asked; only those of
    `ids`, when given: the admin's "normalize again") back to pending."""
    events = RawEvent.objects.filter(user_id=user_id, provider__in=providers)
    if ids is not None:
        events = events.filter(pk__in=list(ids))
    pending = NormalizationStatus.PENDING
    events = events.failed() if failed_only else events.exclude(status=pending)
    # the raw-event trigger puts each of them on the work list (PendingRawEvent)
    return events.update(status=pending, error="")


def _write_params(
    user_id: int, rows: dict[tuple[str, str], bytes], raw_ids: list[int]
) -> dict[str, Any]:
    # in key order: concurrent writers of overlapping keys then take their locks in one order
    array = b"[" + b",".join(rows[key] for key in sorted(rows)) + b"]"
    return {"user_id": user_id, "rows": Jsonb(array, dumps=_as_is), "raw_ids": raw_ids}


def _as_is(value: bytes) -> bytes:
    return value


_collector_lock = threading.Lock()
_collector_pauses = 0
_collector_was_enabled = False


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a chunk is parsed (by every lane: the
    last one out turns it back on, if it was on).

    Decoding and parsing allocate many containers (payload dicts, metadata) and create no
    reference cycles; the collections their allocations trigger walk every live container of
    the worker each time and took a fifth of the parsing time. What a chunk leaves behind is
    collected as usual after it.
    """
    global _collector_pauses, _collector_was_enabled
    with _collector_lock:
        if _collector_pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_pauses += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_pauses -= 1
            if _collector_pauses == 0 and _collector_was_enabled:
                gc.enable()


def _loads(text: str | bytes) -> Any:
    """A payload's JSON text (jsonb's output, as str or UTF-8 bytes) as Python objects, exactly
    as json.loads reads it.

    orjson, which is several times faster, where it reads the same values: not for integers
    beyond 64 bits (a float there) nor numbers beyond a double's range (an error there).
    """
    if len(text) > _ORJSON_MAX_CHARS:
        # The check below copies the text three times over: a huge payload (an inline
        # attachment of tens of MB) is read by json.loads alone, keeping memory bounded.
        return json.loads(text)
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    if _LONG_INTEGER not in (b" " + data).translate(_NUMBER_CLASSES):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _row_json(parsed: ParsedInteraction) -> bytes:
    """One interaction's columns and metadata as a JSON object (UTF-8) for jsonb_to_recordset;
    the standard encoder for what orjson refuses (integers beyond 64 bits, non-string keys), so
    a row normalizes exactly as before. Raises for what no encoder can send (lone surrogates):
    that row fails alone."""
    row = {column: getattr(parsed, column) for column in _COLUMNS}
    row["metadata"] = parsed.metadata
    try:
        return orjson.dumps(row)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        row["occurred_at"] = parsed.occurred_at.isoformat()
        text = json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")


def _check_fits(parsed: ParsedInteraction) -> None:
    for name, limit in _MAX_LENGTHS.items():
        value = getattr(parsed, name)
        if len(value) > limit:
            raise NormalizationError(f"{name} is {len(value)} characters long (limit {limit})")
    for name in _INDEXED_IDS:
        # Indexed: bounded in bytes too, or the index row could outgrow btree's limit.
        value = getattr(parsed, name)
        if not source_id_fits(value):
            raise NormalizationError(f"{name}: {source_id_too_long(value)}")


def _parse_gmail(
    payload: Any,
    *,
    source_id: str,
    own_addresses: frozenset[str],
    fetched_at: datetime,
    max_body_chars: int,
) -> ParsedInteraction:
    parsed = parse_gmail_message(
        payload, own_addresses=own_addresses, fetched_at=fetched_at, max_body_chars=max_body_chars
    )
    if payload.get(DELETED_KEY) is True:
        # deleted at Gmail: the interaction stays (it happened), marked like a cancelled event
        parsed.metadata["deleted"] = True
    return parsed


def _parse_calendar(
    payload: Any,
    *,
    source_id: str,
    own_addresses: frozenset[str],
    fetched_at: datetime,
    max_body_chars: int,
) -> ParsedInteraction:
    calendar_id = payload.get(CALENDAR_ID_KEY) if isinstance(payload, dict) else None
    if not isinstance(calendar_id, str) or not calendar_id:
        # raw events are keyed f"{calendar_id}/{event_id}", like their interactions
        calendar_id = source_id.partition("/")[0] if "/" in source_id else "primary"
    zone = payload.get(CALENDAR_TIME_ZONE_KEY) if isinstance(payload, dict) else None
    return parse_calendar_event(
        payload,
        calendar_id=calendar_id,
        own_addresses=own_addresses,
        fetched_at=fetched_at,
        default_tz=zone if isinstance(zone, str) and zone else "UTC",
        max_body_chars=max_body_chars,
    )


_PARSERS: dict[str, Callable[..., ParsedInteraction]] = {
    Provider.GMAIL: _parse_gmail,
    Provider.CALENDAR: _parse_calendar,
}


class _JsonbBytesLoader(psycopg.adapt.Loader):
    """jsonb's text as the server sent it (UTF-8 bytes): `_loads` reads bytes directly, with no
    decoding to str and encoding back."""

    def load(self, data: Any) -> bytes:
        return bytes(data)


@contextmanager
def _cursor(*, claim_loaders: bool = False) -> Iterator[CursorWrapper]:
    """A server-side-binding cursor (binary parameters), wrapped like Django's own.

    Django's psycopg 3 cursors bind client-side, which cannot send %b parameters; the wrapper
    keeps query logging (django_assert_num_queries), execute wrappers and error mapping.
    `claim_loaders`: the claim's columns read cheaply: jsonb as bytes (see _JsonbBytesLoader)
    and timestamptz by psycopg's own loader (the connection's zone is UTC; Django's loader
    wraps the pure-Python one, a tenth of a chunk's Python time).
    """
    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    if claim_loaders:
        raw.adapters.register_loader("jsonb", _JsonbBytesLoader)
        raw.adapters.register_loader("timestamptz", _TIMESTAMPTZ_LOADER)
    wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
    with wrapper(raw, connection) as wrapped:
        yield wrapped
