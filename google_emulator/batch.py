"""Google's multipart/mixed batch protocol: parse the parts, answer each as application/http."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from http import HTTPStatus

from google_emulator import errors
from google_emulator.routing import Call, Reply, Route

# Gmail documents 100 calls per batch; the client library itself stops at 1000.
MAX_PARTS = {"gmail": 100, "calendar": 1000}


@dataclass(frozen=True)
class BatchPart:
    """One embedded request: its Content-ID and the HTTP request it carries."""

    content_id: str
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


def parse_batch(content_type: str, body: bytes) -> list[BatchPart]:
    """The parts of a batch body; 400 when it is not multipart/mixed with application/http parts."""
    if not content_type.lower().startswith("multipart/mixed"):
        raise errors.invalid_argument("Batch requests must be multipart/mixed")
    envelope = BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    parts = envelope.get_payload()
    if not isinstance(parts, list):
        raise errors.invalid_argument("Malformed multipart body")
    return [_part(part) for part in parts if isinstance(part, Message)]


def _part(part: Message) -> BatchPart:
    payload = part.get_payload(decode=False)
    if not isinstance(payload, str) or part.get_content_type() != "application/http":
        raise errors.invalid_argument("Each batch part must be application/http")
    head, body = _split_head(payload)
    request_line, *header_lines = head.strip().splitlines()
    method, _, rest = request_line.partition(" ")
    target = rest.rsplit(" ", 1)[0] if rest.endswith(("HTTP/1.1", "HTTP/1.0")) else rest
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    # The bytes parser decoded the body as ASCII with surrogate escapes; this restores its bytes.
    raw_body = body.encode("ascii", "surrogateescape")
    return BatchPart(part.get("Content-ID", ""), method.upper(), target.strip(), headers, raw_body)


def _split_head(payload: str) -> tuple[str, str]:
    """Split at the first blank line, whichever line ending the client used."""
    ends = [(payload.find(sep), sep) for sep in ("\r\n\r\n", "\n\n") if sep in payload]
    if not ends:
        return payload, ""
    index, sep = min(ends)
    return payload[:index], payload[index + len(sep) :]


def render_batch(answers: list[tuple[str, Reply]]) -> tuple[str, bytes]:
    """(Content-Type, body) of the batch response, each part answering its request's Content-ID."""
    boundary = "batch_" + secrets.token_urlsafe(12)
    chunks = []
    for content_id, reply in answers:
        response_id = f"<response-{content_id.strip().removeprefix('<').removesuffix('>')}>"
        head = [
            f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}",
            f"Content-Type: {reply.content_type}",
            *(f"{name}: {value}" for name, value in reply.headers.items()),
            f"Content-Length: {len(reply.body)}",
        ]
        envelope = f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {response_id}"
        chunks.append(
            envelope.encode()
            + b"\r\n\r\n"
            + "\r\n".join(head).encode()
            + b"\r\n\r\n"
            + reply.body
            + b"\r\n"
        )
    return f"multipart/mixed; boundary={boundary}", b"".join(
        chunks
    ) + f"--{boundary}--\r\n".encode()


def handle_batch(call: Call) -> Reply:
    parts = parse_batch(call.headers.get("content-type", ""), call.body)
    api = "gmail" if any(part.target.startswith("/gmail/") for part in parts) else "calendar"
    if len(parts) > MAX_PARTS[api]:
        raise errors.invalid_argument(
            f"Too many requests in batch: {len(parts)} > {MAX_PARTS[api]}"
        )
    outer_auth = call.headers.get("authorization")
    emulator = call.emulator

    def answer(part: BatchPart) -> tuple[str, Reply]:
        headers = dict(part.headers)
        if outer_auth and "authorization" not in headers:
            headers["authorization"] = outer_auth
        reply = emulator.handle(part.method, part.target, headers, part.body, in_batch=True)
        return part.content_id, reply

    if emulator.part_concurrency > 1 and len(parts) > 1:
        # Google unwraps a batch into separate calls and may run them in any order.
        workers = min(emulator.part_concurrency, len(parts))
        with ThreadPoolExecutor(workers, thread_name_prefix="emulator-batch") as pool:
            answers = list(pool.map(answer, parts))
    else:
        answers = [answer(part) for part in parts]
    content_type, body = render_batch(answers)
    return Reply(200, body, content_type, batch_parts=len(parts))


ROUTES = [
    Route("batch", "POST", "/batch", handle_batch, "batch"),
    Route("batch", "POST", "/batch/gmail/v1", handle_batch, "batch"),
    Route("batch", "POST", "/batch/calendar/v3", handle_batch, "batch"),
]
