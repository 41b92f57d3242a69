"""Thread-safe account state: Gmail messages with history, and calendars with change sequencing."""

from __future__ import annotations

import copy
import random
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from os import PathLike
from pathlib import Path

from google_emulator.generator import GeneratedMailbox
from jobs.sync import convert

SYSTEM_LABELS = (
    "INBOX",
    "SENT",
    "DRAFT",
    "SPAM",
    "TRASH",
    "UNREAD",
    "STARRED",
    "IMPORTANT",
    "CHAT",
    "CATEGORY_PERSONAL",
    "CATEGORY_SOCIAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
)
_MSGID_TOKEN = re.compile(r"<[^<>\s]+>")
# Gmail message ids are millisecond timestamps shifted left 20 bits plus a sequence number.
_ID_SEQUENCE_BITS = 20


class HistoryExpired(LookupError):
    """startHistoryId is older than the history this mailbox still retains."""


@dataclass
class StoredMessage:
    """A message as Gmail holds it: original bytes, converted resource, live labels."""

    id: str
    thread_id: str
    raw: bytes
    full: dict
    label_ids: list[str]
    internal_date_ms: int
    history_id: int
    _decoded: dict[str, str] = field(default_factory=dict, repr=False)

    def resource(self) -> dict:
        """The format=full resource with the current labels and history id."""
        return {
            **self.full,
            "threadId": self.thread_id,
            "labelIds": list(self.label_ids),
            "historyId": str(self.history_id),
        }

    def ref(self) -> dict:
        return {"id": self.id, "threadId": self.thread_id}

    def header(self, name: str) -> str:
        """A top-level header, RFC 2047-decoded (for search), or ""."""
        key = name.lower()
        if key not in self._decoded:
            self._decoded[key] = _decode(_headers_of(self.full).get(key, ""))
        return self._decoded[key]


@dataclass(frozen=True)
class HistoryRecord:
    """One mailbox change; `message` is the message as it was right after the change."""

    id: int
    kind: str  # messageAdded | messageDeleted | labelAdded | labelRemoved
    message: dict
    label_ids: tuple[str, ...] = ()

    def resource(self) -> dict:
        ref = {"id": self.message["id"], "threadId": self.message["threadId"]}
        record: dict = {"id": str(self.id), "messages": [ref]}
        if self.kind in ("labelAdded", "labelRemoved"):
            change = {"message": self.message, "labelIds": list(self.label_ids)}
            record["labelsAdded" if self.kind == "labelAdded" else "labelsRemoved"] = [change]
        else:
            key = "messagesAdded" if self.kind == "messageAdded" else "messagesDeleted"
            record[key] = [{"message": self.message}]
        return record


def _headers_of(full: dict) -> dict[str, str]:
    headers: dict[str, str] = {}
    for header in full.get("payload", {}).get("headers", []):
        headers.setdefault(header["name"].lower(), header["value"])
    return headers


def _decode(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, ValueError, UnicodeDecodeError):
        return value


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Calendars


class Calendar:
    """One calendar's events in insertion order, each stamped with a change sequence number."""

    def __init__(
        self,
        calendar_id: str,
        summary: str,
        *,
        primary: bool,
        time_zone: str,
        lock: threading.RLock,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.id = calendar_id
        self._on_change = on_change
        self.summary = summary
        self.primary = primary
        self.time_zone = time_zone
        self.sync_epoch = 0
        self._lock = lock
        self._events: dict[str, dict] = {}
        self._changed_at: dict[str, int] = {}
        self._sequence = 0

    def list_entry(self) -> dict:
        """The calendarList resource for this calendar."""
        entry = {
            "kind": "calendar#calendarListEntry",
            "etag": f'"{1_600_000_000_000 + self._sequence}"',
            "id": self.id,
            "summary": self.summary,
            "timeZone": self.time_zone,
            "colorId": "14" if self.primary else "7",
            "backgroundColor": "#9fe1e7" if self.primary else "#42d692",
            "foregroundColor": "#000000",
            "selected": True,
            "accessRole": "owner",
            "defaultReminders": [{"method": "popup", "minutes": 10}] if self.primary else [],
            "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
        }
        if self.primary:
            entry["primary"] = True
        return entry

    @property
    def sequence(self) -> int:
        with self._lock:
            return self._sequence

    def events(self) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(event) for event in self._events.values()]

    def changed_since(self, sequence: int, upto: int) -> list[dict]:
        """Events whose last change lies in (sequence, upto], in change order."""
        with self._lock:
            changed = [
                (at, event_id) for event_id, at in self._changed_at.items() if sequence < at <= upto
            ]
            return [copy.deepcopy(self._events[event_id]) for _, event_id in sorted(changed)]

    def get(self, event_id: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._events[event_id])

    def put(self, event: dict, *, touch: bool) -> dict:
        """Store an event; `touch` stamps it as changed now (a live edit, not a load)."""
        with self._lock:
            self._sequence += 1
            stored = copy.deepcopy(event)
            if touch or "updated" not in stored:
                stored["updated"] = now_rfc3339()
                stored["etag"] = f'"{3_500_000_000_000_000 + self._sequence}"'
            stored.setdefault("created", stored["updated"])
            self._events[stored["id"]] = stored
            self._changed_at[stored["id"]] = self._sequence
            if touch and self._on_change is not None:
                self._on_change(self.id)
            return copy.deepcopy(stored)

    def expire_sync_tokens(self) -> None:
        with self._lock:
            self.sync_epoch += 1


# ---------------------------------------------------------------------------------------------
# Mailbox


class Mailbox:
    """One Google account: Gmail messages, labels and history, plus its calendars."""

    def __init__(self, email: str, aliases: Sequence[str] = ()) -> None:
        self.email = email
        self.aliases = tuple(aliases)
        self._lock = threading.RLock()
        self._messages: dict[str, StoredMessage] = {}
        self._newest_first: list[StoredMessage] | None = None
        self._threads_by_rfc_id: dict[str, str] = {}
        self._user_labels: dict[str, str] = {}
        self._history: list[HistoryRecord] = []
        self._history_id = 1000
        self._history_floor = self._history_id
        self._id_sequence = 0
        # Gmail history ids grow with gaps; clients must not assume they are contiguous.
        self._gaps = random.Random(email)
        self._calendars: dict[str, Calendar] = {}
        # Called with every live change (a history record, a calendar edit): push notifications
        # ({"kind": "gmail", "historyId", "labelIds", "changed"} or {"kind": "calendar",
        # "calendarId"}). Called under the mailbox's lock: a listener must not block.
        self.listeners: list[Callable[[dict], None]] = []
        # Every Google account has a primary calendar named after its address.
        self.add_calendar(email, email, primary=True)

    # -- Gmail reads --------------------------------------------------------------------------

    @property
    def history_id(self) -> int:
        with self._lock:
            return self._history_id

    def get(self, message_id: str) -> StoredMessage:
        """The stored message (KeyError when absent); treat as read-only."""
        with self._lock:
            return self._messages[message_id]

    def newest_first(self) -> list[StoredMessage]:
        """All messages by internal date, newest first (Gmail's list order)."""
        with self._lock:
            if self._newest_first is None:
                self._newest_first = sorted(
                    self._messages.values(),
                    key=lambda m: (m.internal_date_ms, m.id),
                    reverse=True,
                )
            return self._newest_first

    def profile(self) -> dict:
        with self._lock:
            return {
                "emailAddress": self.email,
                "messagesTotal": len(self._messages),
                "threadsTotal": len({m.thread_id for m in self._messages.values()}),
                "historyId": str(self._history_id),
            }

    def labels(self) -> dict[str, str]:
        """Every label id with its name: system labels, then user labels."""
        with self._lock:
            return {**{label: label for label in SYSTEM_LABELS}, **self._user_labels}

    def history_since(self, start_history_id: int) -> list[HistoryRecord]:
        """Records after `start_history_id`; HistoryExpired when it predates retained history."""
        with self._lock:
            if start_history_id < self._history_floor:
                raise HistoryExpired(start_history_id)
            return [record for record in self._history if record.id > start_history_id]

    # -- Gmail writes -------------------------------------------------------------------------

    def add_message(
        self,
        raw: bytes,
        *,
        label_ids: Sequence[str] | None = None,
        internal_date_ms: int | None = None,
    ) -> str:
        """Deliver a message now; recorded in history (messageAdded). Returns its Gmail id.

        Without label_ids the labels come from a Takeout X-Gmail-Labels header, else INBOX.
        """
        with self._lock:
            message = self._store(raw, label_ids, internal_date_ms)
            self._record("messageAdded", message)
            return message.id

    def load_messages(self, items: Iterable[tuple[bytes, Sequence[str] | None, int | None]]) -> int:
        """Bulk-load (raw, label_ids, internal_date_ms) as pre-existing mail: no history records.

        History before the load is not retained, like an old mailbox's history in Gmail.
        """
        count = 0
        with self._lock:
            for raw, label_ids, internal_date_ms in items:
                self._store(raw, label_ids, internal_date_ms)
                count += 1
            self._history_floor = self._history_id
        return count

    def load_mbox(self, path: str | PathLike[str]) -> int:
        """Stream an mbox (Takeout labels honoured) into the mailbox; returns the message count."""
        return self.load_messages((raw, None, None) for raw in convert.iter_mbox(path))

    def load_generated(self, generated: GeneratedMailbox) -> int:
        """Load a generated mailbox: user labels, messages and calendars."""
        with self._lock:
            self._user_labels.update(generated.labels)
            count = self.load_messages(
                (m.raw, m.label_ids, m.internal_date_ms) for m in generated.messages
            )
            for source in generated.calendars:
                calendar = self.add_calendar(
                    source.id, source.summary, primary=source.primary, time_zone=source.time_zone
                )
                for event in source.events:
                    calendar.put(event, touch=False)
        return count

    def modify_labels(
        self, message_id: str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        """Change a message's labels; each effective change is one history record."""
        with self._lock:
            message = self._messages[message_id]
            added = [label for label in dict.fromkeys(add) if label not in message.label_ids]
            removed = [label for label in dict.fromkeys(remove) if label in message.label_ids]
            self._register_labels(added)
            if added:
                message.label_ids.extend(added)
                self._record("labelAdded", message, added)
            if removed:
                message.label_ids[:] = [lbl for lbl in message.label_ids if lbl not in removed]
                self._record("labelRemoved", message, removed)

    def delete_message(self, message_id: str) -> None:
        """Delete permanently (not trash); recorded as messageDeleted."""
        with self._lock:
            message = self._messages.pop(message_id)
            self._newest_first = None
            self._record("messageDeleted", message)

    def expire_history(self, before_history_id: int) -> None:
        """Forget history before this id: an older startHistoryId then gets Gmail's 404."""
        with self._lock:
            self._history_floor = max(self._history_floor, before_history_id)
            self._history = [record for record in self._history if record.id >= before_history_id]

    def add_label(self, name: str, label_id: str | None = None) -> str:
        """Create a user label; returns its id."""
        with self._lock:
            label_id = label_id or f"Label_{len(self._user_labels) + 1}"
            self._user_labels[label_id] = name
            return label_id

    def _store(
        self, raw: bytes, label_ids: Sequence[str] | None, internal_date_ms: int | None
    ) -> StoredMessage:
        full = convert.gmail_message_from_rfc822(
            raw,
            label_ids=list(label_ids) if label_ids is not None else None,
            internal_date_ms=internal_date_ms,
        )
        date_ms = int(full["internalDate"])
        self._id_sequence += 1
        message_id = (
            f"{date_ms << _ID_SEQUENCE_BITS | self._id_sequence % (1 << _ID_SEQUENCE_BITS):x}"
        )
        full["id"] = message_id
        self._history_id += self._gaps.randint(1, 4)
        message = StoredMessage(
            id=message_id,
            thread_id=self._thread_for(_headers_of(full), message_id),
            raw=bytes(raw),
            full=full,
            label_ids=list(full["labelIds"]),
            internal_date_ms=date_ms,
            history_id=self._history_id,
        )
        self._register_labels(message.label_ids)
        self._messages[message_id] = message
        self._newest_first = None
        return message

    def _thread_for(self, headers: dict[str, str], own_id: str) -> str:
        """Gmail threading: Takeout's X-GM-THRID, else the thread of a referenced message."""
        takeout = headers.get("x-gm-thrid", "").strip()
        references = _MSGID_TOKEN.findall(
            headers.get("references", "") + " " + headers.get("in-reply-to", "")
        )
        thread_id = format(int(takeout), "x") if takeout.isdigit() else None
        if thread_id is None:
            known = [
                self._threads_by_rfc_id[ref] for ref in references if ref in self._threads_by_rfc_id
            ]
            thread_id = known[0] if known else own_id
        own = _MSGID_TOKEN.search(headers.get("message-id", ""))
        if own:
            self._threads_by_rfc_id.setdefault(own.group(0), thread_id)
        return thread_id

    def _register_labels(self, label_ids: Iterable[str]) -> None:
        for label in label_ids:
            if label not in SYSTEM_LABELS and label not in self._user_labels:
                self._user_labels[label] = label.removeprefix("Label_")

    def _record(self, kind: str, message: StoredMessage, label_ids: Sequence[str] = ()) -> None:
        self._history_id += self._gaps.randint(1, 4)
        message.history_id = self._history_id
        snapshot = {**message.ref(), "labelIds": list(message.label_ids)}
        self._history.append(HistoryRecord(self._history_id, kind, snapshot, tuple(label_ids)))
        self._emit(
            {
                "kind": "gmail",
                "historyId": self._history_id,
                "labelIds": tuple(message.label_ids),
                "changed": tuple(label_ids),
            }
        )

    def _emit(self, event: dict) -> None:
        for listener in list(self.listeners):
            listener(event)

    # -- Calendars ----------------------------------------------------------------------------

    def add_calendar(
        self, calendar_id: str, summary: str, primary: bool = False, time_zone: str = "UTC"
    ) -> Calendar:
        """Add (or replace) a calendar; a new primary calendar replaces the old one."""
        with self._lock:
            if primary:
                self._calendars = {k: c for k, c in self._calendars.items() if not c.primary}
            calendar = Calendar(
                calendar_id,
                summary,
                primary=primary,
                time_zone=time_zone,
                lock=self._lock,
                on_change=lambda changed: self._emit({"kind": "calendar", "calendarId": changed}),
            )
            self._calendars[calendar_id] = calendar
            return calendar

    def subscribe_calendar(self, calendar: Calendar) -> Calendar:
        """Serve another mailbox's calendar too (a shared calendar this account subscribes
        to): one set of events, the same calendar and event ids for every subscriber. Its
        changes notify the owner's watches only."""
        with self._lock:
            self._calendars[calendar.id] = calendar
            return calendar

    def calendars(self) -> list[Calendar]:
        """Primary first, then the others in the order they were added."""
        with self._lock:
            return sorted(self._calendars.values(), key=lambda c: not c.primary)

    def calendar(self, calendar_id: str) -> Calendar:
        """A calendar by id or "primary" (KeyError when absent)."""
        with self._lock:
            if calendar_id == "primary":
                return next(c for c in self._calendars.values() if c.primary)
            return self._calendars[calendar_id]

    def add_event(self, calendar_id: str, event: dict) -> dict:
        """Create an event now (a change incremental sync will see); returns the stored event."""
        event = {"kind": "calendar#event", "status": "confirmed", **event}
        event.setdefault("id", f"{self._gaps.getrandbits(100):026x}"[:26])
        event.setdefault("iCalUID", f"{event['id']}@google.com")
        return self.calendar(calendar_id).put(event, touch=True)

    def update_event(self, calendar_id: str, event_id: str, changes: dict) -> dict:
        """Apply top-level field changes to an event (bumping its sequence, like Google)."""
        calendar = self.calendar(calendar_id)
        with self._lock:
            event = {**calendar.get(event_id), **changes}
            event["sequence"] = event.get("sequence", 0) + 1
            return calendar.put(event, touch=True)

    def cancel_event(self, calendar_id: str, event_id: str) -> dict:
        """Delete an event: only its identity remains, with status "cancelled"."""
        calendar = self.calendar(calendar_id)
        with self._lock:
            event = calendar.get(event_id)
            keep = ("kind", "id", "recurringEventId", "originalStartTime")
            stub = {key: event[key] for key in keep if key in event}
            return calendar.put({**stub, "status": "cancelled"}, touch=True)

    def expire_sync_tokens(self, calendar_id: str) -> None:
        """Invalidate every sync token of a calendar: the next incremental sync gets 410."""
        self.calendar(calendar_id).expire_sync_tokens()

    def load_ics(self, source: str | PathLike[str] | bytes, calendar_id: str = "primary") -> int:
        """Load an iCalendar file's events (keeping their own updated stamps); returns the count."""
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        calendar = self.calendar(calendar_id)
        events = convert.calendar_events_from_ics(data, calendar_id=calendar.id)
        for event in events:
            calendar.put(event, touch=False)
        return len(events)
