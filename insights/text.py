"""Message text for the rules: the new part of a message (quoted history removed) and the
questions it asks.

The new part: quotequail finds the reply or forward header ("On ... wrote:", "-----Original
Message-----", "Begin forwarded message:") and keeps what is above it; then lines quoted with
">" and everything after a signature delimiter ("-- ") are dropped.

A question is a sentence of the new part that ends with a question mark (also the full-width
one; Spanish "¿...?" included), or that starts with a request ("could you", "can you", "would
you", "please send / confirm / let me know / ...", "let me know"), except small talk ("how are
you?").
Request phrases are English only; a question mark works in any language.
"""

from __future__ import annotations

import re

import quotequail

MAX_QUESTIONS = 5
MAX_QUESTION_CHARS = 300

_SIGNATURE = re.compile(r"^(--|—|__)\s*$")
# Sentence ends: after . ! ? (and their full-width forms) followed by space, or at line breaks.
_SENTENCE_END = re.compile("(?<=[.!?\u3002\uff01\uff1f])\\s+|\n+")
_REQUEST = re.compile(
    r"^(?:(?:hi|hello|hey|dear)\b[^,]*,\s*)?"
    r"(?:(?:and|also|so|but)\s*,?\s*)?"
    r"(?:"
    r"(?:please\s+)?(?:could|can|would|will)\s+you\b"
    r"|please\s+(?:let\s+(?:me|us)\s+know|confirm|send|share|advise|review|provide|reply|respond"
    r"|check|approve|sign|forward)\b"
    r"|let\s+(?:me|us)\s+know\b"
    r"|i\s+(?:would|'d)\s+(?:appreciate|be\s+grateful)\b"
    r")",
    re.IGNORECASE,
)
_SMALL_TALK = re.compile(
    r"^(?:(?:hi|hello|hey|dear)\b[^,?]*,\s*)?"
    r"(?:how\s+are\s+(?:you|things)|how\s+(?:is|was)\s+(?:it\s+going|your\s+\w+)"
    r"|how'?s\s+(?:it\s+going|everything|life)|what'?s\s+up|hope\s+(?:you|all)\b)",
    re.IGNORECASE,
)


def new_text(body: str) -> str:
    """The part of a message its sender wrote: no quoted reply, forwarded history or signature."""
    if not body:
        return ""
    text = body.replace("\r\n", "\n")
    try:
        unwrapped = quotequail.unwrap(text)
    except Exception:  # a library parse failure must not stop a rule; keep the whole text
        unwrapped = None
    if unwrapped and "text_top" in unwrapped:
        text = unwrapped["text_top"] or ""
    elif unwrapped and unwrapped.get("type") in ("forward", "reply"):
        # A message that is only a forward or quote: nothing of the sender's own.
        text = ""
    kept: list[str] = []
    for line in text.split("\n"):
        if _SIGNATURE.match(line.strip()) and line.strip() != "":
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def questions(text: str) -> list[str]:
    """The questions and requests in `text` (the new part of a message), in order, at most
    MAX_QUESTIONS, each at most MAX_QUESTION_CHARS."""
    found: list[str] = []
    for raw in _SENTENCE_END.split(text or ""):
        sentence = " ".join(raw.split()).strip().lstrip("¿¡").strip()
        if len(sentence) < 4:
            continue
        is_question = sentence.endswith(("?", "\uff1f")) or bool(_REQUEST.match(sentence))
        if not is_question or _SMALL_TALK.match(sentence):
            continue
        if len(sentence) > MAX_QUESTION_CHARS:
            sentence = sentence[: MAX_QUESTION_CHARS - 1].rstrip() + "…"
        if sentence not in found:
            found.append(sentence)
        if len(found) >= MAX_QUESTIONS:
            break
    return found


def asked(body: str) -> list[str]:
    """The questions of a message body: questions(new_text(body))."""
    return questions(new_text(body))
