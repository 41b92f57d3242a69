"""HTML to readable plain text with a real HTML parser (no regex tag stripping).

libxml2's HTML parser (lxml), driven event by event into `_Text`, does the work; the stdlib's
HTMLParser, driving the same `_Text`, reads what libxml2 refuses (an empty document, text with
lone surrogates, a document it stops on). On well-formed markup, and on every HTML part of the
shared corpus, both give the same text; libxml2 takes less than half the time (its parsing
is C), and HTML was nearly a quarter of normalization's Python time on the bench's mailbox.
On broken markup the two recover differently (libxml2 as browsers do: an unclosed <title>
holds the rest of the document, as in a browser's tab).
"""

from __future__ import annotations

import re
import threading
from html.parser import HTMLParser

from lxml import etree

_SKIPPED = frozenset({"script", "style", "head", "title", "noscript", "template", "svg"})
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "details", "dialog", "div",
        "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
        "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary",
        "table", "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
_SPACES = re.compile(r"[ \t\f\v\r\u00a0\u200b]+")
_HTML_WHITESPACE = re.compile(r"[ \t\n\r\f]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_CHUNK = 32_768


class _Text:
    """The text of a document, from its parser's events: blocks end lines, skipped elements
    (scripts, styles, the head) give nothing, whitespace outside <pre> collapses.

    Its `start`, `end`, `data` and `close` are an lxml parser target's; `_StdlibParser` calls
    the same methods.
    """

    __slots__ = ("_pre", "_skip", "length", "pieces")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.pieces: list[str] = []
        self.length = 0
        self._skip: list[str] = []
        self._pre = 0

    def start(self, tag: str, attrib: object = None) -> None:
        if tag == "body":
            # a missing </head> must not swallow the whole document
            self._skip.clear()
        if self._skip:
            if tag in _SKIPPED:
                self._skip.append(tag)
            return
        if tag in _SKIPPED:
            self._skip.append(tag)
        elif tag == "br":
            self._emit("\n")
        elif tag in _BLOCKS:
            self._line_break()
            if tag == "pre":
                self._pre += 1
        elif tag in _CELLS:
            self._emit(" ")

    def start_end(self, tag: str) -> None:
        """An element written self-closed (<br/>): the stdlib parser's own event."""
        if tag == "br":
            self._emit("\n")
        elif tag in _BLOCKS and not self._skip:
            self._line_break()

    def end(self, tag: str) -> None:
        if self._skip:
            if tag in self._skip:
                del self._skip[self._skip.index(tag) :]
            return
        if tag in _BLOCKS:
            self._line_break()
            if tag == "pre" and self._pre:
                self._pre -= 1

    def data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre:
            data = _HTML_WHITESPACE.sub(" ", data)
            if data == " " and (not self.pieces or self.pieces[-1].endswith("\n")):
                return
        self._emit(data)

    def close(self) -> None:
        return None

    def text(self, max_chars: int | None) -> str:
        lines = (_SPACES.sub(" ", line).strip() for line in "".join(self.pieces).split("\n"))
        text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
        return text[:max_chars] if max_chars is not None else text

    def _line_break(self) -> None:
        # nested blocks (</li></ul></div>) end one line, not several
        if self.pieces and not self.pieces[-1].endswith("\n"):
            self._emit("\n")

    def _emit(self, text: str) -> None:
        self.pieces.append(text)
        self.length += len(text)


class _StdlibParser(HTMLParser):
    def __init__(self, text: _Text) -> None:
        super().__init__(convert_charrefs=True)
        self.text = text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.text.start(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.text.start_end(tag)

    def handle_endtag(self, tag: str) -> None:
        self.text.end(tag)

    def handle_data(self, data: str) -> None:
        self.text.data(data)


# One libxml2 parser per thread, kept between documents: making one costs as much as reading a
# short e-mail. It is taken out while in use and put back only once a document was read to its
# end, so a parser left mid-document (an exception, even KeyboardInterrupt) is never reused.
_local = threading.local()


def _libxml2_parser() -> tuple[_Text, etree.HTMLParser]:
    state: tuple[_Text, etree.HTMLParser] | None = _local.__dict__.pop("parser", None)
    if state is None:
        text = _Text()
        parser = etree.HTMLParser(
            target=text, recover=True, no_network=True, remove_comments=True, remove_pis=True
        )
        state = (text, parser)
    return state


def html_to_text(markup: str, *, max_chars: int | None = None) -> str:
    """Readable text of an HTML document: blocks become lines, whitespace is collapsed.

    With max_chars the parser stops once that much text was produced, so huge documents stay cheap.
    """
    text, parser = state = _libxml2_parser()
    text.clear()
    try:
        _feed(parser, text, markup, max_chars)
        parser.close()  # also readies the parser for the next document
    except Exception:  # refused (lone surrogates, an empty document): the stdlib parser reads it
        return _stdlib_html_to_text(markup, max_chars=max_chars)
    _local.parser = state
    return text.text(max_chars)


def _feed(
    parser: etree.HTMLParser | HTMLParser, text: _Text, markup: str, max_chars: int | None
) -> bool:
    """Feed `markup` in chunks; False when it stopped early, with over `max_chars` of text."""
    for start in range(0, len(markup), _CHUNK):
        parser.feed(markup[start : start + _CHUNK])
        if max_chars is not None and text.length > max_chars:
            return False
    return True


def _stdlib_html_to_text(markup: str, *, max_chars: int | None = None) -> str:
    text = _Text()
    parser = _StdlibParser(text)
    try:
        if _feed(parser, text, markup, max_chars):
            parser.close()
    except Exception:  # the stdlib parser has crashed on hostile markup: keep the text so far
        pass
    return text.text(max_chars)
