"""HTML to readable plain text with the stdlib HTML parser (no regex tag stripping)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

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


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self.length = 0
        self._skip: list[str] = []
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
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

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._emit("\n")
        elif tag in _BLOCKS and not self._skip:
            self._line_break()

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag in self._skip:
                del self._skip[self._skip.index(tag) :]
            return
        if tag in _BLOCKS:
            self._line_break()
            if tag == "pre" and self._pre:
                self._pre -= 1

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre:
            data = _HTML_WHITESPACE.sub(" ", data)
            if data == " " and (not self.pieces or self.pieces[-1].endswith("\n")):
                return
        self._emit(data)

    def _line_break(self) -> None:
        # nested blocks (</li></ul></div>) end one line, not several
        if self.pieces and not self.pieces[-1].endswith("\n"):
            self._emit("\n")

    def _emit(self, text: str) -> None:
        self.pieces.append(text)
        self.length += len(text)


def html_to_text(markup: str, *, max_chars: int | None = None) -> str:
    """Readable text of an HTML document: blocks become lines, whitespace is collapsed.

    With max_chars the parser stops once that much text was produced, so huge documents stay cheap.
    """
    parser = _TextExtractor()
    try:
        for start in range(0, len(markup), _CHUNK):
            parser.feed(markup[start : start + _CHUNK])
            if max_chars is not None and parser.length > max_chars:
                break
        else:
            parser.close()
    except Exception:  # the stdlib parser has crashed on hostile markup: keep the text so far
        pass
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parser.pieces).split("\n"))
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return text[:max_chars] if max_chars is not None else text
