"""Google Takeout imports: an mbox (Gmail) or an .ics (Calendar) streamed into raw events.

An import stores what a sync would (same upsert, same provider, same payload shapes; see
jobs.sync.gmail and jobs.sync.calendar), in chunks, in a batch of its own, then starts the
stage that follows the matching sync for that batch. Re-importing a file inserts nothing.

Takeout mail carries no Gmail message ids, so an imported message's source_id is the id the
converter derives from its Message-ID header (stable across re-imports, but not the id the
API sync stores for the same message).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.config import get_config
from jobs.context import Metrics, metrics_line
from jobs.enqueue import enqueue
from jobs.models import GoogleAccount, Job, Provider
from jobs.pipeline import next_stage
from jobs.sync.calendar import calendar_events_store, event_item
from jobs.sync.convert import (
    calendar_events_from_ics,
    gmail_message_from_rfc822,
    iter_mbox,
)
from jobs.sync.gmail import excluded_label_ids, message_item
from jobs.sync.raw_events import RawItem, UpsertCounts, raw_events_pending_exist, raw_events_upsert

IMPORT_CHUNK_SIZE = 500


class ImportFileError(ValueError):
    """The file to import is missing or not of the expected kind; the message says which."""


@dataclass(frozen=True, slots=True)
class ImportProgress:
    items: int
    bytes_read: int
    elapsed_s: float


@dataclass
class ImportResult:
    user_id: int
    batch_id: uuid.UUID
    fetched: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    excluded: int = 0
    bytes_read: int = 0
    duration_ms: int = 0
    next_job: Job | None = None

    def metrics_line(self) -> dict[str, Any]:
        """The engine's run-metrics line (jobs.context.metrics_line), for the import as a run."""
        updated = self.counts.updated
        metrics = Metrics(
            items_fetched=self.fetched,
            items_inserted=self.counts.inserted,
            items_skipped=self.fetched - self.counts.inserted - updated,
            details={
                "itemsUpdated": updated,
                "itemsExcluded": self.excluded,
                "bytesRead": self.bytes_read,
                "nextJobId": self.next_job.pk if self.next_job else None,
            },
        )
        return metrics_line(
            metrics,
            user_id=self.user_id,
            batch_id=self.batch_id,
            duration_ms=self.duration_ms,
            with_details=True,
        )


ProgressCallback = Callable[[ImportProgress], None]


def mbox_import(
    *,
    account: GoogleAccount,
    path: str | Path,
    chunk_size: int = IMPORT_CHUNK_SIZE,
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Stream a Takeout mbox into gmail raw events; labels come from X-Gmail-Labels.

    Messages in excluded labels (spam, trash, drafts, chats by default) are skipped, as in a sync.
    """
    path = Path(path)
    _require_file(path)
    with path.open("rb") as handle:
        if handle.read(5) != b"From ":
            raise ImportFileError(f"'{path}' is not an mbox file (it must start with 'From ')")
    excluded = excluded_label_ids(get_config())
    result = ImportResult(user_id=account.user_id, batch_id=uuid.uuid4())

    def items() -> Iterator[tuple[RawItem | None, int]]:
        for raw in iter_mbox(path):
            # Without label_ids the converter reads Takeout's X-Gmail-Labels header.
            message = gmail_message_from_rfc822(raw)
            keep = not excluded.intersection(message["labelIds"])
            yield (message_item(message) if keep else None), len(raw)

    def store(chunk: list[RawItem]) -> UpsertCounts:
        return raw_events_upsert(
            user_id=account.user_id,
            account_id=account.pk,
            provider=Provider.GMAIL,
            batch_id=result.batch_id,
            items=chunk,
        )

    _run(account, items(), store, result, chunk_size, on_progress)
    return _finish(account, Provider.GMAIL, "gmail_sync", result)


def ics_import(
    *,
    account: GoogleAccount,
    path: str | Path,
    calendar_id: str | None = None,
    chunk_size: int = IMPORT_CHUNK_SIZE,
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import an iCalendar file's events into calendar raw events of `calendar_id`.

    The calendar defaults to the account's primary one, whose id is its address, so events a
    sync stores later (Google ids are kept from <id>@google.com UIDs) land on the same rows.
    """
    path = Path(path)
    _require_file(path)
    data = path.read_bytes()
    if b"BEGIN:VCALENDAR" not in data[:4096].upper():
        raise ImportFileError(f"'{path}' is not an iCalendar file (no BEGIN:VCALENDAR)")
    calendar = calendar_id or account.email
    result = ImportResult(user_id=account.user_id, batch_id=uuid.uuid4(), bytes_read=len(data))
    events = calendar_events_from_ics(data, calendar_id=calendar)
    items = ((event_item(event, calendar_id=calendar), 0) for event in events)

    def store(chunk: list[RawItem]) -> UpsertCounts:
        return calendar_events_store(account=account, batch_id=result.batch_id, items=chunk)

    _run(account, items, store, result, chunk_size, on_progress)
    return _finish(account, Provider.CALENDAR, "calendar_sync", result)


def _require_file(path: Path) -> None:
    if not path.exists():
        raise ImportFileError(f"file '{path}' does not exist")
    if not path.is_file():
        raise ImportFileError(f"'{path}' is not a file")


def _run(
    account: GoogleAccount,
    items: Iterable[tuple[RawItem | None, int]],
    store: Callable[[list[RawItem]], UpsertCounts],
    result: ImportResult,
    chunk_size: int,
    on_progress: ProgressCallback | None,
) -> None:
    started = time.monotonic()
    chunk: list[RawItem] = []

    reported = -1

    def flush() -> None:
        nonlocal reported
        if chunk:
            result.counts.add(store(chunk))
            chunk.clear()
        if on_progress is not None and reported != result.fetched:
            reported = result.fetched
            on_progress(
                ImportProgress(result.fetched, result.bytes_read, time.monotonic() - started)
            )

    for item, size in items:
        result.fetched += 1
        result.bytes_read += size
        if item is None:
            result.excluded += 1
            continue
        chunk.append(item)
        if len(chunk) >= chunk_size:
            flush()
    flush()
    result.duration_ms = int((time.monotonic() - started) * 1000)


def _finish(
    account: GoogleAccount, provider: str, sync_kind: str, result: ImportResult
) -> ImportResult:
    """Start the stage that follows `sync_kind` for the import's batch, if it stored anything."""
    following = next_stage(sync_kind)
    if following and raw_events_pending_exist(
        user_id=account.user_id, provider=provider, batch_id=result.batch_id
    ):
        result.next_job = enqueue(
            following,
            user=account.user_id,
            payload={"account_id": account.pk},
            batch_id=result.batch_id,
            dedupe_key=f"{following}:{account.user_id}:{result.batch_id}",
        )
    return result
