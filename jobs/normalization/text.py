"""Text helpers for the normalizers: charsets, RFC 2047 words, whitespace, DB-safe strings."""

from __future__ import annotations

import binascii
import codecs
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache

_WHITESPACE = re.compile(r"\s+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")

# Mailers that declare latin-1 (or nothing useful) almost always mean windows-1252, as WHATWG
# decided for browsers; decoding as cp1252 keeps curly quotes and euro signs instead of C1 junk.
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-sjis": "shift_jis",
}


@lru_cache(maxsize=256)
def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # codecs such as rot13 or base64 are not text encodings and would raise on bytes.decode
    return info.name if getattr(info, "_is_text_encoding", True) else None


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode bytes with the declared charset, then UTF-8, then cp1252 with replacement."""
    name = _codec(charset)
    if name is not None:
        try:
            return data.decode(name)
        except (ValueError, LookupError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _decode_word_bytes(encoding: str, text: str) -> bytes:
    if encoding in "bB":
        text = text.strip()
        try:
            return binascii.a2b_base64(text + "=" * (-len(text) % 4))
        except ValueError:
            try:
                return binascii.a2b_base64(text.rstrip("=")[: len(text) // 4 * 4])
            except ValueError:
                return text.encode("ascii", "replace")
    return binascii.a2b_qp(text.encode("ascii", "replace"), header=True)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words leniently; text outside them is kept as is."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = b""
    pending_charset: str | None = None
    end = 0
    for match in _ENCODED_WORD.finditer(value):
        gap = value[end : match.start()]
        charset = match.group(1).split("*", 1)[0]
        # whitespace between adjacent encoded words is not part of the text (RFC 2047 section 6.2)
        if gap and (not gap.isspace() or not pending_charset):
            if pending_charset is not None:
                out.append(decode_bytes(pending, pending_charset))
                pending, pending_charset = b"", None
            out.append(gap)
        # adjacent words in one charset are joined before decoding: encoders split multibyte chars
        if pending_charset is not None and charset.lower() != pending_charset.lower():
            out.append(decode_bytes(pending, pending_charset))
            pending = b""
        pending += _decode_word_bytes(match.group(2), match.group(3))
        pending_charset = charset
        end = match.end()
    if pending_charset is not None:
        out.append(decode_bytes(pending, pending_charset))
    out.append(value[end:])
    return "".join(out)


def unfold(value: str) -> str:
    """Undo header folding (CRLF followed by whitespace) and drop stray line breaks."""
    if "\n" in value or "\r" in value:
        return value.replace("\r", "").replace("\n", "")
    return value


def collapse_whitespace(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def db_safe(text: str) -> str:
    """Drop NUL characters and lone surrogates, which Postgres text and jsonb reject."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def parse_date_header(value: str) -> datetime | None:
    """An RFC 2822 Date header as an aware UTC datetime; None when it cannot be read.

    A date without a zone is taken as UTC, as Gmail does for internalDate.
    """
    if not value.strip():
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
