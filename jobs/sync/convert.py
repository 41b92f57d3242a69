"""Turns RFC 822 mail, mbox files and iCalendar data into Gmail v1 and Calendar v3 resources."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.feedparser import FeedParser
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from functools import lru_cache
from io import BytesIO
from os import PathLike
from typing import IO, Any
from zoneinfo import ZoneInfo

import icalendar
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from jobs.normalization.html import html_to_text
from jobs.normalization.text import (
    collapse_whitespace,
    decode_bytes,
    decode_words,
    parse_date_header,
    unfold,
)
from jobs.normalization.types import OCCURRED_AT_ESTIMATED_KEY

SNIPPET_CHARS = 200
_MSGID_TOKEN = re.compile(r"<[^<>\s]+>")
_MBOX_QUOTED_FROM = re.compile(rb"^>+From ")
_ANY_FROM_LINE = re.compile(rb"^>*From ", re.MULTILINE)
_HEADER_FIELD = re.compile(rb"^[!-9;-~]+[ \t]*:")
# at least one of these among the first header fields makes a block of bytes a mail message
_MAIL_HEADERS = frozenset(
    b"from to cc subject date message-id received return-path delivered-to mime-version "
    b"content-type sender reply-to x-gmail-labels x-gm-thrid in-reply-to references".split()
)
# internalDate of a message whose date nothing tells: the epoch, flagged as an estimate
UNKNOWN_DATE_MS = 0
_TAKEOUT_LABELS = {
    "inbox": "INBOX",
    "sent": "SENT",
    "important": "IMPORTANT",
    "starred": "STARRED",
    "unread": "UNREAD",
    "spam": "SPAM",
    "trash": "TRASH",
    "draft": "DRAFT",
    "drafts": "DRAFT",
    "chat": "CHAT",
    "category personal": "CATEGORY_PERSONAL",
    "category social": "CATEGORY_SOCIAL",
    "category promotions": "CATEGORY_PROMOTIONS",
    "category updates": "CATEGORY_UPDATES",
    "category forums": "CATEGORY_FORUMS",
}
# Takeout states these as pseudo-labels; the API expresses them by the absence of INBOX/UNREAD
_TAKEOUT_PSEUDO_LABELS = frozenset({"opened", "archived"})
_PARTSTAT = {
    "ACCEPTED": "accepted",
    "DECLINED": "declined",
    "TENTATIVE": "tentative",
    "NEEDS-ACTION": "needsAction",
}
_RECURRENCE_PROPS = ("RRULE:", "RRULE;", "EXRULE", "RDATE", "EXDATE")
_BASE32HEX = re.compile(r"^[a-v0-9]{5,1024}$")
# Multiparts nested deeper than this are flattened: the parts below become children of the part
# at this depth, in order. Real mail nests a few levels; hostile mail nests thousands, which
# would exhaust Python's recursion here and in json, and the normalizer reads 32 levels.
MAX_PART_DEPTH = 24


# --- Gmail -------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _hex_id(seed: bytes) -> str:
    return hashlib.sha256(seed).hexdigest()[:16]


def _message_id_token(value: str) -> str:
    match = _MSGID_TOKEN.search(value)
    return match.group(0) if match else value.strip()


def _header_text(value: Any) -> str:
    """A stored header value as real text: 8-bit bytes kept by the parser are decoded."""
    text = str(value)
    if not text.isascii():
        # a UnicodeEncodeError means real unicode already (the message was built from str)
        with contextlib.suppress(UnicodeEncodeError):
            text = decode_bytes(text.encode("ascii", "surrogateescape"))
    return unfold(text)


def _headers(part: Message) -> list[dict[str, str]]:
    return [{"name": _header_text(k), "value": _header_text(v)} for k, v in part.raw_items()]


_FEED_CHUNK = 8192  # what email.parser.Parser reads at a time


def _parse(raw: bytes) -> Message:
    """email.message_from_bytes(raw), in a fraction of its memory.

    message_from_bytes decodes the whole message to one str and wraps it in a StringIO (4 bytes
    a character): a 25 MB message peaked at 180 MB. The same parser fed 8 kB slices, each decoded
    as it does (ASCII, surrogateescape, byte for byte), builds the same Message.
    """
    # compat32 (FeedParser's default) is the most forgiving policy: it records defects instead
    # of raising
    parser = FeedParser()
    try:
        for start in range(0, len(raw), _FEED_CHUNK):
            parser.feed(raw[start : start + _FEED_CHUNK].decode("ascii", "surrogateescape"))
        return parser.close()
    except RecursionError:
        # nested deeper than the stdlib parser recurses (some 3,000 multiparts): the headers,
        # and the body as one opaque part
        return BytesParser().parsebytes(raw, headersonly=True)


def _is_container(part: Message) -> bool:
    """A multipart whose children are parts of this message (a forwarded message is a leaf)."""
    return (
        part.is_multipart()
        and part.get_content_type() != "message/rfc822"
        and isinstance(part.get_payload(), list)
    )


def _parts(part: Message) -> list[Message]:
    payload = part.get_payload()
    return (
        [child for child in payload if isinstance(child, Message)]
        if isinstance(payload, list)
        else []
    )


def _children(part: Message, part_id: str, depth: int) -> list[tuple[Message, str]]:
    """The children of a container part at `depth` with their Gmail part ids; at MAX_PART_DEPTH
    the leaves of everything below, so no tree is deeper than that."""
    children = _parts(part)
    if depth + 1 >= MAX_PART_DEPTH:
        leaves: list[Message] = []
        stack = children[::-1]
        while stack:
            child = stack.pop()
            if _is_container(child):
                stack.extend(_parts(child)[::-1])
            else:
                leaves.append(child)
        children = leaves
    return [(child, f"{part_id}.{i}" if part_id else str(i)) for i, child in enumerate(children)]


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, TypeError, AttributeError):
        return ""
    return decode_words(_header_text(name)).strip() if name else ""


def _body_bytes(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except (ValueError, LookupError, TypeError, AttributeError):
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        try:
            return payload[0].as_bytes()
        except Exception:  # the generator chokes on some broken nested messages
            return b""
    return b""


_CLEAN_BASE64 = re.compile(r"[A-Za-z0-9+/\s]*(?:={1,2}[\s]*)?")


def _decoded_size(part: Message) -> int:
    """len(_body_bytes(part)) without decoding, for clean base64 (what attachments are).

    Decoding to count took five times the part's size at its peak (the encoded bytes, their
    lines, the joined lines, the result): a 25 MB attachment cost 110 MB. Anything but clean
    base64 is decoded as before.
    """
    payload = part.get_payload()
    if (
        isinstance(payload, str)
        and str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64"
        and payload.isascii()
        and _CLEAN_BASE64.fullmatch(payload)
    ):
        space = sum(payload.count(c) for c in " \t\r\n\x0b\x0c")
        chars = len(payload) - space - payload.count("=")
        if chars % 4 != 1:  # one char over a group of four is no byte: decode_b's business
            return chars * 3 // 4
    return len(_body_bytes(part))


def _is_attachment(part: Message, filename: str) -> bool:
    if filename or part.get_content_type() == "message/rfc822":
        return True
    disposition = str(part.get("Content-Disposition", "")).split(";", 1)[0].strip().lower()
    return disposition == "attachment"


def _payload(
    part: Message, part_id: str, seed: str, texts: list[tuple[str, str]], depth: int = 0
) -> dict:
    mime = part.get_content_type()
    filename = _filename(part)
    node: dict[str, Any] = {
        "partId": part_id,
        "mimeType": mime,
        "filename": filename,
        "headers": _headers(part),
    }
    if _is_container(part):
        node["body"] = {"size": 0}
        node["parts"] = [
            _payload(child, child_id, seed, texts, depth + 1)
            for child, child_id in _children(part, part_id, depth)
        ]
        return node
    if _is_attachment(part, filename):
        # only its size is stored (the bytes are served by attachment_bytes)
        node["body"] = {"size": _decoded_size(part), "attachmentId": attachment_id(seed, part_id)}
        return node
    data = _body_bytes(part)
    body: dict[str, Any] = {"size": len(data)}
    if data:
        body["data"] = _b64url(data)
        if mime in ("text/plain", "text/html"):
            texts.append((mime, decode_bytes(data, part.get_content_charset())))
    node["body"] = body
    return node


def attachment_id(message_seed: str, part_id: str) -> str:
    """Opaque, stable attachment id for one part of one message (as users.messages.attachments)."""
    digest = hashlib.sha256(f"{message_seed}/{part_id}".encode()).digest()
    return "ANGj" + _b64url(digest * 2)


def attachment_bytes(raw: bytes, attachment: str, *, message_id: str | None = None) -> bytes | None:
    """The decoded bytes of the part that gmail_message_from_rfc822 gave this attachmentId."""
    msg = _parse(raw)
    seed = message_id or _gmail_id(msg, raw)

    def walk(part: Message, part_id: str, depth: int) -> bytes | None:
        if _is_container(part):
            for child, child_id in _children(part, part_id, depth):
                found = walk(child, child_id, depth + 1)
                if found is not None:
                    return found
            return None
        return _body_bytes(part) if attachment_id(seed, part_id) == attachment else None

    return walk(msg, "", 0)


def _first(msg: Message, name: str) -> str:
    value = msg.get(name)
    return _header_text(value) if value is not None else ""


def _gmail_id(msg: Message, raw: bytes) -> str:
    message_id = _message_id_token(_first(msg, "Message-ID"))
    return _hex_id(message_id.encode("utf-8", "replace") if message_id else canonical_bytes(raw))


def canonical_bytes(raw: bytes) -> bytes:
    """The message as no mbox writer changes it: LF line ends, no '>' quoting of 'From ' lines.

    mboxo quotes 'From ' but not '>From ', mboxrd quotes both, some writers use CRLF: ids and
    digests derived from this are the same whichever way the message was stored.
    """
    return _ANY_FROM_LINE.sub(b"From ", bytes(raw).replace(b"\r\n", b"\n"))


def message_digest(raw: bytes) -> str:
    """A digest of the message's content, independent of its mbox escaping (canonical_bytes)."""
    return hashlib.sha256(canonical_bytes(raw)).hexdigest()[:16]


def rfc822_problem(raw: bytes) -> str | None:
    """Why these bytes are not a mail message (None when they are one).

    A message starts with header fields ("Name: value", blank lines before them tolerated), has
    no NUL byte among them and has at least one header every mail has (From, Date, Received...).
    """
    start = len(raw) - len(raw.lstrip(b" \t\r\n"))
    if start == len(raw):
        return "empty message"
    end = raw.find(b"\n\n", start)
    end_crlf = raw.find(b"\r\n\r\n", start)
    ends = [e for e in (end, end_crlf) if e >= 0]
    head = raw[start : min(ends) if ends else min(len(raw), start + 65536)]
    if not _HEADER_FIELD.match(head):
        return "not a mail message: it does not start with a header field (binary data?)"
    if b"\x00" in head:
        return "not a mail message: NUL bytes in its header"
    names = {
        line.split(b":", 1)[0].strip().lower()
        for line in head.splitlines()[:200]
        if _HEADER_FIELD.match(line)
    }
    if not names & _MAIL_HEADERS:
        return "not a mail message: none of From, To, Subject, Date, Message-ID, Received"
    return None


def _thread_id(msg: Message, own_id: str) -> str:
    takeout = _first(msg, "X-GM-THRID").strip()
    if takeout.isdigit():
        return format(int(takeout), "x")
    for header in ("References", "In-Reply-To"):
        tokens = _MSGID_TOKEN.findall(_first(msg, header))
        if tokens:
            return _hex_id(tokens[0].encode("utf-8", "replace"))
    return own_id


def _date_ms(value: str) -> int | None:
    parsed = parse_date_header(value)
    if parsed is None:
        return None
    try:
        return int(parsed.timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        return None


def _header_date_ms(msg: Message) -> int | None:
    """Gmail's internalDate for a message: its newest Received timestamp, else its Date."""
    received = _first(msg, "Received")
    if ";" in received:
        ms = _date_ms(received.rsplit(";", 1)[1])
        if ms is not None:
            return ms
    return _date_ms(_first(msg, "Date"))


def _snippet(texts: list[tuple[str, str]]) -> str:
    plain = next((text for mime, text in texts if mime == "text/plain" and text.strip()), None)
    if plain is None:
        html = next((text for mime, text in texts if mime == "text/html"), "")
        plain = html_to_text(html, max_chars=SNIPPET_CHARS * 4)
    return collapse_whitespace(plain[: SNIPPET_CHARS * 4].replace("\x00", ""))[:SNIPPET_CHARS]


def gmail_message_from_rfc822(
    raw: bytes,
    *,
    message_id: str | None = None,
    thread_id: str | None = None,
    label_ids: list[str] | None = None,
    internal_date_ms: int | None = None,
    fallback_date_ms: int | None = None,
    history_id: int = 1,
    default_label_ids: Sequence[str] = ("INBOX",),
) -> dict:
    """Gmail `users.messages` resource in format=full, as Gmail builds it from the raw message.

    Header values are unfolded but not RFC 2047-decoded. Without label_ids the labels come from
    Takeout's X-Gmail-Labels, else default_label_ids. Never raises on malformed mail.

    The date (internalDate) is `internal_date_ms`, else the newest Received timestamp, else the
    Date header, else `fallback_date_ms` (an mbox 'From ' line's date), else UNKNOWN_DATE_MS with
    `"_occurredAtEstimated": true`: the same bytes always give the same resource.
    """
    raw = bytes(raw)
    msg = _parse(raw)
    own_id = message_id or _gmail_id(msg, raw)
    texts: list[tuple[str, str]] = []
    payload = _payload(msg, "", own_id, texts)
    if label_ids is None:
        label_ids = _labels_from_value(_first(msg, "X-Gmail-Labels")) or list(default_label_ids)
    date_ms = internal_date_ms
    if date_ms is None:
        date_ms = _header_date_ms(msg)
    if date_ms is None:
        date_ms = fallback_date_ms
    resource = {
        "id": own_id,
        "threadId": thread_id or _thread_id(msg, own_id),
        "labelIds": list(label_ids),
        "snippet": _snippet(texts),
        "payload": payload,
        "sizeEstimate": len(raw),
        "historyId": str(history_id),
        "internalDate": str(date_ms if date_ms is not None else UNKNOWN_DATE_MS),
    }
    if date_ms is None:
        resource[OCCURRED_AT_ESTIMATED_KEY] = True
    return resource


def format_message(
    full: dict, raw: bytes, fmt: str, metadata_headers: list[str] | None = None
) -> dict:
    """Project a format=full resource to 'full', 'metadata', 'minimal' or 'raw' as Gmail does."""
    if fmt == "full":
        return copy.deepcopy(full)
    minimal = {key: copy.deepcopy(value) for key, value in full.items() if key != "payload"}
    if fmt == "minimal":
        return minimal
    if fmt == "raw":
        return {**minimal, "raw": _b64url(bytes(raw))}
    if fmt == "metadata":
        payload = full.get("payload") or {}
        headers = payload.get("headers") or []
        if metadata_headers:
            wanted = {name.lower() for name in metadata_headers}
            headers = [h for h in headers if h["name"].lower() in wanted]
        return {
            **minimal,
            "payload": {
                "partId": payload.get("partId", ""),
                "mimeType": payload.get("mimeType", "text/plain"),
                "filename": payload.get("filename", ""),
                "headers": copy.deepcopy(headers),
                "body": {"size": 0},
            },
        }
    raise ValueError(f"unknown message format {fmt!r}")


@dataclass(frozen=True, slots=True)
class MboxEntry:
    """One message of an mbox: its bytes (unquoted), its 'From ' line and where it was."""

    raw: bytes
    separator: bytes  # the 'From ' line without its line end; b"" before the first one
    line: int  # 1-based line of the separator (or of the first line when there is none)
    size: int  # bytes the entry took in the file, separator included


def iter_mbox(path_or_file: str | PathLike[str] | IO[bytes]) -> Iterator[bytes]:
    """Stream the messages of an mbox file (Takeout style, mboxrd '>From ' unquoting) one by one.

    Every line starting with 'From ' separates messages, as mbox writers quote the others.
    """
    for entry in iter_mbox_entries(path_or_file):
        yield entry.raw


def iter_mbox_entries(path_or_file: str | PathLike[str] | IO[bytes]) -> Iterator[MboxEntry]:
    """iter_mbox with each message's 'From ' line, line number and size in the file."""
    if isinstance(path_or_file, str | PathLike):
        with open(path_or_file, "rb") as handle:
            yield from _iter_mbox_lines(handle)
    else:
        yield from _iter_mbox_lines(path_or_file)


def _iter_mbox_lines(handle: IO[bytes]) -> Iterator[MboxEntry]:
    # One buffer per message (not a list of its lines: 80-byte lines as objects take 2.5 times
    # their bytes), released before the entry is handed out.
    body = bytearray()
    last = b""  # the last line, when it was blank (it belongs to the mbox, not the message)
    has_text = False
    separator = b""
    started = False
    first_line = size = 0
    for number, line in enumerate(handle, 1):
        if line.startswith(b"From "):
            if started or has_text:
                raw = bytes(memoryview(body)[: len(body) - len(last)])
                body = bytearray()
                yield MboxEntry(raw, separator, first_line or 1, size)
            body, last, has_text, started = bytearray(), b"", False, True
            separator, first_line, size = line.rstrip(b"\r\n"), number, len(line)
            continue
        size += len(line)
        if line.startswith(b">") and _MBOX_QUOTED_FROM.match(line):
            line = line[1:]
        body += line
        last = line if line in (b"\n", b"\r\n") else b""
        has_text = has_text or bool(line.strip())
    if started or has_text:
        yield MboxEntry(
            bytes(memoryview(body)[: len(body) - len(last)]), separator, first_line or 1, size
        )


def mbox_separator_date_ms(separator: bytes) -> int | None:
    """The date of an mbox 'From sender date' line in ms since the epoch, None when it has none.

    Takeout writes 'From 1790...@xxx Sat Mar 01 12:00:00 +0000 2025'; classic mbox writes
    asctime ('Mon Feb  8 02:53:47 1993', zone optional, UTC when absent).
    """
    parts = separator.decode("ascii", "replace").split(None, 2)
    if len(parts) < 3 or parts[0] != "From":
        return None
    return _date_ms(parts[2])


def _labels_from_value(value: str) -> list[str]:
    labels: list[str] = []
    for name in _split_labels(decode_words(value)):
        key = name.lower()
        if not name or key in _TAKEOUT_PSEUDO_LABELS:
            continue
        label = _TAKEOUT_LABELS.get(key, f"Label_{name}")
        if label not in labels:
            labels.append(label)
    return labels


def _split_labels(value: str) -> list[str]:
    # Takeout quotes label names that contain commas
    names: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            names.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    names.append("".join(current).strip())
    return names


def gmail_labels_from_headers(raw: bytes) -> list[str]:
    """Gmail label ids for Takeout's X-Gmail-Labels header (custom labels become Label_<name>)."""
    headers = BytesHeaderParser().parsebytes(bytes(raw))
    return _labels_from_value(_first(headers, "X-Gmail-Labels"))


# --- Calendar ----------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _iana_zone(tzid: str | None) -> str | None:
    if not tzid:
        return None
    name = tzid.strip().strip('"')
    name = WINDOWS_TO_OLSON.get(name, name)
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None
    return name


def _rfc3339(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _event_time(value: date | datetime, tzid: str | None, default_zone: str | None) -> dict:
    if not isinstance(value, datetime):
        return {"date": value.isoformat()}
    zone = _iana_zone(tzid) or (None if tzid else default_zone)
    if value.tzinfo is None:
        # floating time: Google pins it to the calendar's zone
        value = value.replace(tzinfo=ZoneInfo(default_zone) if default_zone else UTC)
        zone = default_zone
    offset = value.utcoffset()
    text = value.isoformat(timespec="seconds")
    if offset == timedelta(0):
        text = value.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
        zone = zone or "UTC"
    result: dict[str, str] = {"dateTime": text}
    if zone:
        result["timeZone"] = zone
    return result


def _prop(event: icalendar.Event, name: str) -> Any:
    value = event.get(name)
    return value[0] if isinstance(value, list) and value else value


def _text(event: icalendar.Event, name: str) -> str | None:
    value = _prop(event, name)
    return str(value) if value is not None and str(value) != "" else None


def _dt_prop(event: icalendar.Event, name: str) -> tuple[date | datetime, str | None] | None:
    value = _prop(event, name)
    try:
        moment = value.dt
    except (AttributeError, ValueError):  # absent, or icalendar's BrokenCalendarProperty
        return None
    if isinstance(moment, tuple | list):
        moment = moment[0] if moment else None
    if not isinstance(moment, date):
        return None
    return moment, value.params.get("TZID")


def _person(address: Any) -> tuple[str, str | None]:
    email = str(address)
    if email.lower().startswith("mailto:"):
        email = email[7:]
    name = address.params.get("CN") if hasattr(address, "params") else None
    return email.strip().lower(), (str(name) if name else None)


def _event_id(uid: str, taken: set[str]) -> str:
    local = uid.split("@", 1)[0]
    base = local if uid.endswith("@google.com") and _BASE32HEX.match(local) else None
    if base is None:
        base = base64.b32hexencode(hashlib.sha256(uid.encode()).digest()[:15]).decode().lower()
    event_id, n = base, 1
    while event_id in taken:
        n += 1
        event_id = f"{base}{n}"
    return event_id


def _instance_suffix(value: date | datetime) -> str:
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return moment.strftime("%Y%m%dT%H%M%SZ")
    return value.strftime("%Y%m%d")


def _conference(url: str) -> tuple[str | None, dict]:
    conference_id = url.rstrip("/").rsplit("/", 1)[-1]
    meet = "meet.google.com" in url
    data = {
        "entryPoints": [{"entryPointType": "video", "uri": url, "label": url.split("://", 1)[-1]}],
        "conferenceSolution": {
            "key": {"type": "hangoutsMeet" if meet else "addOn"},
            "name": "Google Meet" if meet else "Conference",
        },
        "conferenceId": conference_id,
    }
    return (url if meet else None), data


def _event_resource(
    event: icalendar.Event,
    *,
    calendar_id: str,
    default_zone: str | None,
    ids: dict[str, str],
    taken: set[str],
) -> dict | None:
    start = _dt_prop(event, "DTSTART")
    if start is None:
        return None
    uid = _text(event, "UID") or hashlib.sha256(event.to_ical()).hexdigest()
    if uid not in ids:
        ids[uid] = _event_id(uid, taken)
        taken.add(ids[uid])
    master_id = ids[uid]
    recurrence_id = _dt_prop(event, "RECURRENCE-ID")
    event_id = master_id
    if recurrence_id is not None:
        event_id = f"{master_id}_{_instance_suffix(recurrence_id[0])}"
    status = (_text(event, "STATUS") or "confirmed").lower()
    resource: dict[str, Any] = {
        "kind": "calendar#event",
        "id": event_id,
        "status": status if status in ("confirmed", "tentative", "cancelled") else "confirmed",
        "htmlLink": "https://www.google.com/calendar/event?eid="
        + _b64url(f"{event_id} {calendar_id}".encode()),
    }
    for key, prop in (("created", "CREATED"), ("updated", "LAST-MODIFIED")):
        stamp = _dt_prop(event, prop) or (_dt_prop(event, "DTSTAMP") if key == "updated" else None)
        if stamp is not None and isinstance(stamp[0], datetime):
            resource[key] = _rfc3339(stamp[0])
    for key, prop in (("summary", "SUMMARY"), ("description", "DESCRIPTION")):
        value = _text(event, prop)
        if value is not None:
            resource[key] = value
    location = _text(event, "LOCATION")
    if location is not None:
        resource["location"] = location
    organizer = _prop(event, "ORGANIZER")
    organizer_email = None
    if organizer is not None:
        organizer_email, name = _person(organizer)
        resource["organizer"] = {"email": organizer_email}
        if name:
            resource["organizer"]["displayName"] = name
        if organizer_email == calendar_id.lower():
            resource["organizer"]["self"] = True
    resource["start"] = _event_time(start[0], start[1], default_zone)
    end = _event_end(event, start[0])
    resource["end"] = _event_time(end, _end_tzid(event, start[1]), default_zone)
    lines = (str(line) for line in event.content_lines())
    recurrence = [line for line in lines if line.upper().startswith(_RECURRENCE_PROPS)]
    if recurrence and recurrence_id is None:
        resource["recurrence"] = recurrence
    if recurrence_id is not None:
        resource["recurringEventId"] = master_id
        original, original_tzid = recurrence_id
        resource["originalStartTime"] = _event_time(original, original_tzid, default_zone)
    if _text(event, "TRANSP") == "TRANSPARENT":
        resource["transparency"] = "transparent"
    resource["iCalUID"] = uid
    resource["sequence"] = _sequence(event)
    attendees = event.get("ATTENDEE")
    if attendees is not None:
        resource["attendees"] = [
            _attendee(a, organizer_email, calendar_id)
            for a in (attendees if isinstance(attendees, list) else [attendees])
        ]
    conference = _text(event, "X-GOOGLE-CONFERENCE")
    if conference:
        hangout, data = _conference(conference)
        if hangout:
            resource["hangoutLink"] = hangout
        resource["conferenceData"] = data
    resource["eventType"] = "default"
    return resource


def _sequence(event: icalendar.Event) -> int:
    try:
        return int(str(_prop(event, "SEQUENCE") or 0))
    except ValueError:
        return 0


def _end_tzid(event: icalendar.Event, start_tzid: str | None) -> str | None:
    end = _dt_prop(event, "DTEND")
    return end[1] if end is not None else start_tzid


def _event_end(event: icalendar.Event, start: date | datetime) -> date | datetime:
    end = _dt_prop(event, "DTEND")
    if end is not None and isinstance(end[0], datetime) == isinstance(start, datetime):
        return end[0]
    duration = _prop(event, "DURATION")
    if duration is not None and isinstance(getattr(duration, "dt", None), timedelta):
        return start + duration.dt
    # RFC 5545: a DATE start without end lasts one day; a DATE-TIME start lasts no time at all
    return start if isinstance(start, datetime) else start + timedelta(days=1)


def _attendee(address: Any, organizer_email: str | None, calendar_id: str) -> dict:
    email, name = _person(address)
    params = getattr(address, "params", {})
    attendee: dict[str, Any] = {"email": email}
    if name:
        attendee["displayName"] = name
    if organizer_email and email == organizer_email:
        attendee["organizer"] = True
    if email == calendar_id.lower():
        attendee["self"] = True
    if str(params.get("ROLE", "")).upper() == "OPT-PARTICIPANT":
        attendee["optional"] = True
    if str(params.get("CUTYPE", "")).upper() == "RESOURCE":
        attendee["resource"] = True
    attendee["responseStatus"] = _PARTSTAT.get(
        str(params.get("PARTSTAT", "NEEDS-ACTION")).upper(), "needsAction"
    )
    return attendee


def calendar_events_from_ics(data: bytes, *, calendar_id: str = "primary") -> list[dict]:
    """The VEVENTs of an iCalendar file as Calendar v3 `events` resources (see IcsReader).

    Unusable events are left out; IcsReader says which and why.
    """
    reader = IcsReader(BytesIO(bytes(data)), calendar_id=calendar_id)
    return [item.resource for item in reader if item.resource is not None]


@dataclass(frozen=True, slots=True)
class IcsItem:
    """One VEVENT read: its resource, or None and the reason it was rejected."""

    resource: dict | None
    reason: str
    line: int  # 1-based line of its BEGIN:VEVENT
    size: int  # bytes it took in the file


class IcsReader:
    """Stream the VEVENTs of an iCalendar file, one component at a time.

    Memory holds one event, the calendar's properties and its VTIMEZONEs (which Google and most
    writers put before the events; an event before the zone it names reads the TZID as an IANA
    or Windows zone name). Ids are stable: Google's own ids are reused from <id>@google.com
    UIDs, other UIDs are hashed; RECURRENCE-ID overrides get Google's <master>_<start> instance
    ids. An event that cannot be used is yielded with resource None and a reason (no valid
    DTSTART, unreadable, the file ends inside it). After iteration `complete` says whether
    every VCALENDAR that began also ended (False for a truncated file).
    """

    def __init__(self, handle: IO[bytes], *, calendar_id: str = "primary") -> None:
        self.handle = handle
        self.calendar_id = calendar_id
        self.complete = True
        self.calendars = 0
        self.ids: dict[str, str] = {}
        self.taken: set[str] = set()

    def __iter__(self) -> Iterator[IcsItem]:
        head: list[bytes] = []  # the current calendar's own properties
        zones: list[bytes] = []  # VTIMEZONEs read but not yet registered
        default_zone: str | None = None
        zone_known = False
        block: list[bytes] | None = None  # the VEVENT (or VTIMEZONE, or other) being read
        block_kind = b""
        block_line = block_size = 0
        depth = 0  # components open inside the current block
        open_calendar = False
        for number, line in enumerate(self.handle, 1):
            text = line.rstrip(b"\r\n")
            folded = line[:1] in (b" ", b"\t")
            upper = b"" if folded else text.strip().upper()
            if block is not None:
                block.append(text)
                block_size += len(line)
                if upper.startswith(b"BEGIN:"):
                    depth += 1
                elif upper.startswith(b"END:"):
                    if depth:
                        depth -= 1
                        continue
                    if block_kind == b"VEVENT":
                        if zones:
                            _register_zones(zones)
                            zones = []
                        if not zone_known:
                            default_zone, zone_known = _head_zone(head), True
                        yield self._event(block, default_zone, block_line, block_size)
                    elif block_kind == b"VTIMEZONE":
                        zones.extend(block)
                    block = None
                continue
            if upper == b"BEGIN:VCALENDAR":
                head, zones, zone_known, open_calendar = [], [], False, True
                self.calendars += 1
            elif upper == b"END:VCALENDAR":
                open_calendar = False
            elif upper.startswith(b"BEGIN:"):
                block, block_kind = [text], upper[6:].strip()
                block_line, block_size, depth = number, len(line), 0
            elif open_calendar:
                head.append(text)
        if block is not None and block_kind == b"VEVENT":
            yield IcsItem(
                None, "the file ends inside this event (truncated?)", block_line, block_size
            )
        if block is not None or open_calendar:
            self.complete = False

    def _event(self, block: list[bytes], default_zone: str | None, line: int, size: int) -> IcsItem:
        event = _parse_event(block)
        if event is None:
            return IcsItem(None, "unreadable event (not valid iCalendar)", line, size)
        try:
            resource = _event_resource(
                event,
                calendar_id=self.calendar_id,
                default_zone=default_zone,
                ids=self.ids,
                taken=self.taken,
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, OverflowError) as exc:
            return IcsItem(None, f"unreadable event ({type(exc).__name__})", line, size)
        if resource is None:
            return IcsItem(None, "no valid DTSTART", line, size)
        return IcsItem(resource, "", line, size)


def _head_zone(head: list[bytes]) -> str | None:
    for line in head:
        name, _, value = line.partition(b":")
        if name.split(b";", 1)[0].strip().upper() == b"X-WR-TIMEZONE":
            return _iana_zone(value.decode("utf-8", "replace").strip() or None)
    return None


def _register_zones(zones: list[bytes]) -> None:
    # icalendar keeps every VTIMEZONE it parses and resolves TZIDs of later events with it, as
    # when the whole file is parsed at once; parsing the zones once spares doing it per event.
    text = b"\r\n".join([b"BEGIN:VCALENDAR", *zones, b"END:VCALENDAR", b""])
    with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
        icalendar.Calendar.from_ical(text)


def _parse_event(block: list[bytes]) -> icalendar.Event | None:
    # One bad property (an alarm's malformed trigger, say) fails the whole parse: then again
    # without alarms.
    for lines in (block, _without_alarms(block)):
        try:
            component = icalendar.Event.from_ical(b"\r\n".join([*lines, b""]))
        except (ValueError, KeyError, IndexError, TypeError):
            continue
        if isinstance(component, icalendar.Event):
            return component
    return None


def _without_alarms(block: list[bytes]) -> list[bytes]:
    kept: list[bytes] = []
    skipping = False
    for line in block:
        upper = line.strip().upper()
        if upper == b"BEGIN:VALARM":
            skipping = True
        elif skipping:
            skipping = upper != b"END:VALARM"
        else:
            kept.append(line)
    return kept
