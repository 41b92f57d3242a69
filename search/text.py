"""The text an interaction is searched and embedded by, and its chunks.

An e-mail's body loses what the sender did not write in this message: quoted replies, forwarded
history and the signature. Two maintained libraries do that: quotequail finds the reply or
forward header (Gmail's, Outlook's "-----Original Message-----", "---------- Forwarded message
---------") and keeps the text above it; mail-parser-reply then removes what is left of quoted
replies in a dozen languages and the signature ("-- ", "Best regards, ...", "Saludos, ...").
A message that is only a forward (nothing written above the forwarded message) keeps the
forwarded text, which is then what the message is about. A meeting's description is kept as
it is.

Chunks: the subject and as much of the body as fits the model's token limit, counted with the
provider's own `count_tokens`; a longer body gives more chunks, each starting with the subject
and overlapping the previous one by a few tokens, so a sentence cut at a boundary is whole in
one of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import quotequail
from mailparser_reply import EmailReplyParser

# The languages whose reply headers and sign-offs mail-parser-reply knows (its own list, less
# its test entry).
REPLY_LANGUAGES: tuple[str, ...] = (
    "en",
    "de",
    "es",
    "fr",
    "it",
    "nl",
    "pl",
    "sv",
    "da",
    "cs",
    "ja",
    "ko",
    "zh",
)
# The subject is cut to this many characters in every chunk (a subject is short; a pathological
# one must not leave no room for the body).
SUBJECT_MAX_CHARS = 300


@lru_cache(maxsize=8)
def _reply_parser(languages: tuple[str, ...]) -> EmailReplyParser:
    return EmailReplyParser(languages=list(languages))


def clean_body(body: str, *, languages: Sequence[str] = REPLY_LANGUAGES) -> str:
    """The part of an e-mail body its sender wrote for this message (see the module doc)."""
    text = (body or "").replace("\r\n", "\n").strip()
    if not text:
        return ""
    unwrapped = quotequail.unwrap(text)
    if unwrapped:
        top = (unwrapped.get("text_top") or "").strip()
        if top:
            text = top
        elif unwrapped.get("type") == "forward":
            text = (unwrapped.get("text") or "").strip()
        else:
            text = ""
    if not text:
        return ""
    latest = _reply_parser(tuple(languages)).read(text).replies
    if latest:
        return (latest[0].body or "").strip()
    return text


def content_hash(text: str) -> str:
    """32 hex characters identifying a text (a document's or a chunk's)."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def document_text(*, subject: str, body: str) -> str:
    """The text a document stands for, as hashed and embedded."""
    subject = (subject or "").strip()[:SUBJECT_MAX_CHARS]
    body = (body or "").strip()
    return f"{subject}\n\n{body}" if subject and body else subject or body


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    content_hash: str


def chunk_document(
    *,
    subject: str,
    body: str,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    overlap_tokens: int,
    max_chunks: int,
) -> list[Chunk]:
    """The document's chunks, each within `max_tokens` of the model (by `count_tokens`).

    One chunk when the whole text fits (the usual e-mail); else each chunk is the subject and a
    run of whole words, the longest that fits, the next one starting `overlap_tokens` back; at
    most `max_chunks` (the rest of a very long body is not embedded; it stays in the full-text
    index). A single word longer than the limit is cut by characters. Empty text: no chunk.
    """
    subject = (subject or "").strip()[:SUBJECT_MAX_CHARS]
    whole = document_text(subject=subject, body=body)
    if not whole:
        return []
    if count_tokens(whole) <= max_tokens:
        return [Chunk(0, whole, content_hash(whole))]
    words = _words_within(
        (body or "").split(), count_tokens=count_tokens, max_tokens=max_tokens // 2
    )
    head = f"{subject}\n\n" if subject else ""

    def text_of(start: int, end: int) -> str:
        return head + " ".join(words[start:end])

    def fits(start: int, end: int) -> bool:
        return count_tokens(text_of(start, end)) <= max_tokens

    chunks: list[Chunk] = []
    start = 0
    while start < len(words) and len(chunks) < max_chunks:
        # the longest run words[start:end] that fits (at least one word)
        low, high = start + 1, len(words)
        while low < high:
            middle = (low + high + 1) // 2
            if fits(start, middle):
                low = middle
            else:
                high = middle - 1
        end = low
        text = text_of(start, end)
        chunks.append(Chunk(len(chunks), text, content_hash(text)))
        if end >= len(words):
            break
        # the next chunk starts at the earliest word whose run up to `end` is within the
        # overlap, and always after this chunk's start
        low, high = start + 1, end
        while low < high:
            middle = (low + high) // 2
            if count_tokens(" ".join(words[middle:end])) <= overlap_tokens:
                high = middle
            else:
                low = middle + 1
        start = low
    return chunks


def _words_within(
    words: list[str], *, count_tokens: Callable[[str], int], max_tokens: int
) -> list[str]:
    """The words, a word longer than `max_tokens` halved until its pieces fit (a URL, base64)."""

    def pieces(word: str) -> list[str]:
        if len(word) <= 1 or count_tokens(word) <= max_tokens:
            return [word]
        half = len(word) // 2
        return pieces(word[:half]) + pieces(word[half:])

    out: list[str] = []
    for word in words:
        out.extend([word] if len(word) <= 16 else pieces(word))
    return out
