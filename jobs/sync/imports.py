"""Google Takeout imports: an mbox (Gmail) or an .ics (Calendar) streamed into raw events.

An import stores what a sync would (same upsert, same provider, same payload shapes; see
jobs.sync.gmail and jobs.sync.calendar), in chunks, in a batch of its own, then starts the
stage that follows the matching sync for that batch. Both files are read item by item (one
message, one VEVENT), never whole. Every item read is counted (ImportResult); re-importing a
file inserts and updates nothing. An import needs no OAuth: the account may be `offline`.

Takeout mail carries no Gmail message ids, so an imported message's source_id is the id the
converter derives from its Message-ID header (stable across re-imports, but not the id the
API sync stores for the same message).
"""

from __future__ import annotations

import hashlib
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
from jobs.normalization.selectors import raw_events_pending_exist
from jobs.normalization.types import OCCURRED_AT_ESTIMATED_KEY
from jobs.pipeline import next_stage
from jobs.sync.calendar import calendar_events_store, event_item
from jobs.sync.convert import (
    IcsReader,
    gmail_message_from_rfc822,
    iter_mbox_entries,
    mbox_separator_date_ms,
    message_digest,
    rfc822_problem,
)
from jobs.sync.gmail import excluded_label_ids, message_item
from jobs.sync.raw_events import RawItem, UpsertCounts, raw_events_upsert

IMPORT_CHUNK_SIZE = 500
# rejected items kept on the result (with their reason) to show the user; the rest are counted
REJECTIONS_KEPT = 5


class ImportFileError(ValueError):
    """The file to import is missing or not of the expected kind; the message says which."""


@dataclass(frozen=True, slots=True)
class ImportProgress:
    items: int
    bytes_read: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class Rejection:
    """An item of the file that was not imported: which one, where, and why."""

    item: int  # 1-based position among the items read
    line: int  # 1-based line of the file where it starts
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"item": self.item, "line": self.line, "reason": self.reason}


@dataclass
class ImportResult:
    """What an import did. Every item read is exactly one of: inserted, updated, unchanged
    (stored already with the same content, or an identical copy earlier in the file), excluded
    (in a label syncs skip) or rejected (not usable, with a reason)."""

    user_id: int
    batch_id: uuid.UUID
    fetched: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    excluded: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    # False when the file ends in the middle of an item (the items before it were imported)
    complete: bool = True
    bytes_read: int = 0
    duration_ms: int = 0
    next_job: Job | None = None

    @property
    def unchanged(self) -> int:
        counts = self.counts
        return self.fetched - counts.inserted - counts.updated - self.excluded - self.rejected

    def reject(self, *, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < REJECTIONS_KEPT:
            self.rejections.append(Rejection(item=self.fetched, line=line, reason=reason))

    def metrics_line(self) -> dict[str, Any]:
        """The engine's run-metrics line (jobs.context.metrics_line), for the import as a run."""
        updated = self.counts.updated
        metrics = Metrics(
            items_fetched=self.fetched,
            items_inserted=self.counts.inserted,
            items_skipped=self.fetched - self.counts.inserted - updated,
            details={
                "itemsUpdated": updated,
                "itemsUnchanged": self.unchanged,
                "itemsExcluded": self.excluded,
                "itemsRejected": self.rejected,
                "rejections": [r.as_dict() for r in self.rejections],
                "complete": self.complete,
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


@dataclass(frozen=True, slots=True)
class _Read:
    """One item read from a file: to store, excluded (item None, no reason) or rejected."""

    item: RawItem | None
    line: int
    size: int
    reason: str = ""


def mbox_import(
    *,
    account: GoogleAccount,
    path: str | Path,
    chunk_size: int = IMPORT_CHUNK_SIZE,
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Stream a Takeout mbox into gmail raw events; labels come from X-Gmail-Labels.

    Messages in excluded labels (spam, trash, drafts, chats by default) are skipped, as in a sync.
    An entry that is not a mail message (binary data after a 'From ' line, say) is rejected; a
    file with no mail message at all is an ImportFileError. Dates and ids are deterministic
    (see gmail_message_from_rfc822), so importing a file again changes nothing.
    """
    path = Path(path)
    import_file_check(path)
    with path.open("rb") as handle:
        if handle.read(5) != b"From ":
            raise ImportFileError(f"'{path}' is not an mbox file (it must start with 'From ')")
    excluded = excluded_label_ids(get_config())
    result = ImportResult(user_id=account.user_id, batch_id=uuid.uuid4())
    # id -> digest of the content that took it: a Message-ID reused by a different message
    # (it happens) must not make two messages overwrite one row at every import.
    seen: dict[str, str] = {}

    def items() -> Iterator[_Read]:
        for entry in iter_mbox_entries(path):
            problem = rfc822_problem(entry.raw)
            if problem:
                yield _Read(None, entry.line, entry.size, problem)
                continue
            fallback = mbox_separator_date_ms(entry.separator)
            # Labels come from Takeout's X-Gmail-Labels; a plain mbox has none (not INBOX: then
            # normalization tells sent mail by the account's addresses).
            message = gmail_message_from_rfc822(
                entry.raw, fallback_date_ms=fallback, default_label_ids=()
            )
            digest = message_digest(entry.raw)
            taken_by = seen.setdefault(message["id"], digest)
            if taken_by != digest:
                own_id = hashlib.sha256(f"{message['id']}/{digest}".encode()).hexdigest()[:16]
                message = gmail_message_from_rfc822(
                    entry.raw, message_id=own_id, fallback_date_ms=fallback, default_label_ids=()
                )
                seen.setdefault(own_id, digest)
            keep = not excluded.intersection(message["labelIds"])
            yield _Read(_message_item(message) if keep else None, entry.line, entry.size)

    def store(chunk: list[RawItem]) -> UpsertCounts:
        return raw_events_upsert(
            user_id=account.user_id,
            account_id=account.pk,
            provider=Provider.GMAIL,
            batch_id=result.batch_id,
            items=chunk,
        )

    _run(items(), store, result, chunk_size, on_progress)
    if result.rejected and result.rejected == result.fetched:
        raise ImportFileError(
            f"'{path}' holds no mail message: its {result.fetched} entries were rejected "
            f"(first: {result.rejections[0].reason})"
        )
    return _finish(account, Provider.GMAIL, "gmail_sync", result)


def _message_item(message: dict) -> RawItem:
    item = message_item(message)
    if message.get(OCCURRED_AT_ESTIMATED_KEY):
        # the placeholder date is no date: the row is not dated 1970
        return RawItem(source_id=item.source_id, occurred_at=None, payload=item.payload)
    return item


def ics_import(
    *,
    account: GoogleAccount,
    path: str | Path,
    calendar_id: str | None = None,
    chunk_size: int = IMPORT_CHUNK_SIZE,
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Stream an iCalendar file's events into calendar raw events of `calendar_id`, one
    VEVENT at a time (memory: one event plus the calendar's time zones; see IcsReader).

    The calendar defaults to the account's primary one, whose id is its address, so events a
    sync stores later (Google ids are kept from <id>@google.com UIDs) land on the same rows.
    An event without a valid DTSTART, or unreadable, is rejected with its reason; a file that
    ends inside an event imports the events before it and has `complete` False.
    """
    path = Path(path)
    import_file_check(path)
    with path.open("rb") as handle:
        if b"BEGIN:VCALENDAR" not in handle.read(4096).upper():
            raise ImportFileError(f"'{path}' is not an iCalendar file (no BEGIN:VCALENDAR)")
    calendar = calendar_id or account.email
    result = ImportResult(user_id=account.user_id, batch_id=uuid.uuid4())

    def store(chunk: list[RawItem]) -> UpsertCounts:
        return calendar_events_store(account=account, batch_id=result.batch_id, items=chunk)

    with path.open("rb") as handle:
        reader = IcsReader(handle, calendar_id=calendar)
        items = (
            _Read(
                event_item(event.resource, calendar_id=calendar) if event.resource else None,
                event.line,
                event.size,
                event.reason or ("" if event.resource else "rejected"),
            )
            for event in reader
        )
        _run(items, store, result, chunk_size, on_progress)
        result.complete = reader.complete
    return _finish(account, Provider.CALENDAR, "calendar_sync", result)


def import_file_check(path: Path) -> None:
    """ImportFileError when `path` is missing or not a file (before anything is recorded)."""
    if not path.exists():
        raise ImportFileError(f"file '{path}' does not exist")
    if not path.is_file():
        raise ImportFileError(f"'{path}' is not a file")


def _run(
    items: Iterable[_Read],
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

    for read in items:
        result.fetched += 1
        result.bytes_read += read.size
        if read.reason:
            result.reject(line=read.line, reason=read.reason)
            continue
        if read.item is None:
            result.excluded += 1
            continue
        chunk.append(read.item)
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
