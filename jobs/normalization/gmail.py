"""Gmail `users.messages` resources (format=full) to ParsedInteraction, fast and never crashing."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses
from functools import lru_cache
from html import unescape
from typing import Any

from jobs.normalization.html import html_to_text
from jobs.normalization.text import (
    collapse_whitespace,
    db_safe,
    decode_bytes,
    decode_words,
    parse_date_header,
)
from jobs.normalization.types import (
    OCCURRED_AT_ESTIMATED_KEY,
    NormalizationError,
    ParsedInteraction,
)

MAX_BODY_CHARS = 100_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_DEPTH = 32
# one entry of a plain address list: "Quoted, Name" <addr>, Name <addr> or a bare addr
_ADDRESS_ENTRY = re.compile(
    r'[\s,]*(?:"(?P<quoted>[^"\\]*)"\s*|(?P<name>[^",<>()\\;:]*?)\s*)<(?P<angle>[^<>]*)>\s*(?:,|$)'
    r'|[\s,]*(?P<bare>[^\s",<>()\\;:]+)\s*(?:,|$)'
)
_MSGID_TOKEN = re.compile(r"<[^<>]+>")
_CHARSET_PARAM = re.compile(r"charset\s*=\s*[\"']?([^\s\"';]+)", re.IGNORECASE)
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
_WHITESPACE = re.compile(r"\s")
_FOLDED = re.compile(r"\s\s|[\t\r\n]")


def parse_gmail_message(
    message: dict,
    *,
    own_addresses: frozenset[str],
    fetched_at: datetime,
    max_body_chars: int = MAX_BODY_CHARS,
) -> ParsedInteraction:
    """Normalize one Gmail message; raises NormalizationError only when it has no id or payload.

    Direction: the SENT and DRAFT labels decide (outbound) when the message has labels, as every
    message Gmail serves has; without labels (an import of a plain mbox) it is outbound when From
    is one of own_addresses (the account and its send-as aliases).
    """
    if not isinstance(message, dict):
        raise NormalizationError(f"message is a {type(message).__name__}, not an object")
    message_id = message.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise NormalizationError("message has no id")
    payload = message.get("payload")
    if not isinstance(payload, dict):
        raise NormalizationError(f"message {message_id} has no payload (not format=full)")

    headers = _header_map(payload.get("headers"))
    subject = headers.get("subject", "")
    if "=?" in subject:
        subject = decode_words(subject)
    subject = db_safe(collapse_whitespace(subject) if _FOLDED.search(subject) else subject.strip())

    addresses = {
        key: _addresses(headers.get(name, ""))
        for name, key in (("to", "to"), ("cc", "cc"), ("bcc", "bcc"), ("reply-to", "reply_to"))
    }
    senders = _addresses(headers.get("from", ""))
    sender = senders[0] if senders else None

    label_ids = message.get("labelIds")
    labels = (
        [db_safe(x) for x in label_ids if isinstance(x, str)] if isinstance(label_ids, list) else []
    )
    if labels:
        # Gmail's own verdict: mail sent from an alias the account learnt of later is still SENT
        outbound = "SENT" in labels or "DRAFT" in labels
    else:
        outbound = sender is not None and sender["email"] in _lowered(own_addresses)

    snippet = message.get("snippet")
    snippet = db_safe(unescape(snippet)) if isinstance(snippet, str) else ""

    plain: list[tuple[dict, str]] = []
    html: list[tuple[dict, str]] = []
    attachments: list[dict[str, Any]] = []
    _walk(payload, plain, html, attachments, 0, headers)
    body_text, body_source, truncated = _body(plain, html, snippet, max_body_chars)

    date_header = headers.get("date")
    estimated = message.get(OCCURRED_AT_ESTIMATED_KEY) is True
    occurred_at = None if estimated else _internal_date(message.get("internalDate"))
    if occurred_at is None and date_header:
        occurred_at = parse_date_header(date_header)
    estimated = estimated or occurred_at is None
    if occurred_at is None:
        occurred_at = fetched_at if fetched_at.tzinfo else fetched_at.replace(tzinfo=UTC)
        occurred_at = occurred_at.astimezone(UTC)

    references = headers.get("references", "")
    reference_ids = (_MSGID_TOKEN.findall(references) or references.split()) if references else []
    thread_id = message.get("threadId")
    metadata: dict[str, Any] = {
        "from": sender,
        **addresses,
        "message_id": db_safe(headers.get("message-id", "").strip()) or None,
        "in_reply_to": db_safe(headers.get("in-reply-to", "").strip()) or None,
        "references": [db_safe(ref) for ref in reference_ids],
        "labels": labels,
        "attachments": attachments,
        "snippet": snippet,
        "date_header": db_safe(date_header) if date_header is not None else None,
        "body_source": body_source,
        "body_truncated": truncated,
    }
    return ParsedInteraction(
        source="gmail",
        source_id=message_id,
        kind="email_outbound" if outbound else "email_inbound",
        occurred_at=occurred_at,
        occurred_at_estimated=estimated,
        subject=subject,
        body_text=body_text,
        thread_id=thread_id if isinstance(thread_id, str) else "",
        direction="outbound" if outbound else "inbound",
        metadata=metadata,
    )


def _header_map(headers: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    if not isinstance(headers, list):
        return found
    for header in headers:
        try:
            name = header["name"].lower()
            value = header["value"]
        except (TypeError, KeyError, AttributeError):
            continue
        # the first occurrence wins, as mail clients show it
        if name not in found and isinstance(value, str):
            found[name] = value
    return found


@lru_cache(maxsize=64)
def _lowered(addresses: frozenset[str]) -> frozenset[str]:
    return frozenset(address.strip().lower() for address in addresses)


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    if "xn--" not in domain:
        return domain
    try:
        return domain.encode("ascii").decode("idna").lower()
    except UnicodeError:
        labels = []
        for label in domain.split("."):
            try:
                labels.append(label.encode("ascii").decode("idna"))
            except UnicodeError:
                labels.append(label)
        return ".".join(labels)


def _address(name: str, address: str) -> tuple[str, str] | None:
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or _WHITESPACE.search(address):
        return None
    if "=?" in name:
        name = decode_words(name)
    name = name.strip().strip('"')
    if _FOLDED.search(name):
        name = collapse_whitespace(name)
    return db_safe(name), db_safe(f"{local.lower()}@{_domain(domain)}")


def _simple_pairs(value: str) -> list[tuple[str, str]] | None:
    """Split a plain address list; None when comments, escapes or groups need the full parser."""
    pairs = []
    pos, end = 0, len(value)
    while pos < end:
        match = _ADDRESS_ENTRY.match(value, pos)
        if match is None or match.end() == pos:
            if value[pos:].strip(" \t\r\n,"):
                return None
            break
        bare = match.group("bare")
        if bare is not None:
            pairs.append(("", bare))
        else:
            quoted = match.group("quoted")
            pairs.append((quoted if quoted is not None else match.group("name"), match["angle"]))
        pos = match.end()
    return pairs


# correspondents repeat across a mailbox, so most address headers are parsed once per worker
@lru_cache(maxsize=16_384)
def _parse_addresses(value: str) -> tuple[tuple[str, str], ...]:
    pairs = _simple_pairs(value)
    if pairs is None:
        # encoded words never contain a bare comma, so splitting before decoding is safe
        pairs = getaddresses([value])
    return tuple(parsed for name, address in pairs if (parsed := _address(name, address)))


def _addresses(value: str) -> list[dict[str, str]]:
    if not value:
        return []
    return [{"name": name, "email": email} for name, email in _parse_addresses(value)]


def _content_headers(part: dict) -> tuple[str, str]:
    content_type = disposition = ""
    headers = part.get("headers")
    if isinstance(headers, list):
        for header in headers:
            if not isinstance(header, dict):
                continue
            name = header.get("name")
            value = header.get("value")
            if not isinstance(name, str) or not isinstance(value, str):
                continue
            name = name.lower()
            if name == "content-type" and not content_type:
                content_type = value
            elif name == "content-disposition" and not disposition:
                disposition = value
    return content_type, disposition


def _walk(
    part: dict,
    plain: list[tuple[dict, str]],
    html: list[tuple[dict, str]],
    attachments: list[dict],
    depth: int,
    header_map: dict[str, str] | None = None,
) -> None:
    """Sort a part's leaves into plain, html and attachments; `header_map` is the part's
    headers already read by _header_map (the message's own, for the top part), if at hand."""
    mime = part.get("mimeType")
    mime = mime.lower() if isinstance(mime, str) else ""
    body = part.get("body")
    body = body if isinstance(body, dict) else {}
    filename = part.get("filename")
    filename = filename if isinstance(filename, str) else ""
    children = part.get("parts")
    content_type = disposition = ""
    if not filename and not body.get("attachmentId") and mime != "message/rfc822":
        if isinstance(children, list):
            if depth < _MAX_DEPTH:
                for child in children:
                    if isinstance(child, dict):
                        _walk(child, plain, html, attachments, depth + 1)
            return
        if header_map is not None:
            content_type = header_map.get("content-type", "")
            disposition = header_map.get("content-disposition", "")
        else:
            content_type, disposition = _content_headers(part)
        if not disposition.lower().startswith("attachment"):
            if mime == "text/plain" or (not mime and depth == 0):
                plain.append((body, content_type))
            elif mime == "text/html":
                html.append((body, content_type))
            return
    # forwarded messages and text attachments are not the body of this message
    size = body.get("size")
    attachments.append(
        {
            "filename": db_safe(decode_words(filename)),
            "mime_type": db_safe(mime),
            "size": size if isinstance(size, int) else 0,
        }
    )


def _b64decode(data: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        pass
    cleaned = _NOT_BASE64.sub("", data.replace("-", "+").replace("_", "/"))
    cleaned = cleaned[: len(cleaned) // 4 * 4]
    try:
        return base64.b64decode(cleaned)
    except (binascii.Error, ValueError):
        return b""


def _part_text(body: dict, content_type: str, max_chars: int) -> tuple[str, bool]:
    data = body.get("data")
    if not isinstance(data, str) or not data:
        return "", False
    # 4 bytes per character at most, 4 base64 chars per 3 bytes: decoding more would be wasted
    limit = (max_chars * 16 // 3 + 4) // 4 * 4
    cut = len(data) > limit
    raw = _b64decode(data[:limit] if cut else data)
    charset = _CHARSET_PARAM.search(content_type)
    return decode_bytes(raw, charset.group(1) if charset else None), cut


def _body(
    plain: list[tuple[dict, str]], html: list[tuple[dict, str]], snippet: str, max_chars: int
) -> tuple[str, str, bool]:
    for parts, source in ((plain, "plain"), (html, "html")):
        texts = []
        truncated = False
        for part_body, content_type in parts:
            text, cut = _part_text(part_body, content_type, max_chars)
            truncated = truncated or cut
            if source == "html":
                text = html_to_text(text, max_chars=max_chars + 1)
            elif "\r" in text:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            text = text.strip()
            if text:
                texts.append(text)
        body = "\n\n".join(texts)
        if body:
            if len(body) > max_chars:
                body, truncated = body[:max_chars], True
            return db_safe(body), source, truncated
    if snippet:
        return snippet, "snippet", False
    return "", "none", False


def _internal_date(value: Any) -> datetime | None:
    try:
        ms = int(value)
        return _EPOCH + timedelta(milliseconds=ms) if ms > 0 else None
    except (TypeError, ValueError, OverflowError):
        return None
