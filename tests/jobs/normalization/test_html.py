"""HTML bodies to text: libxml2's parser, with the stdlib's for what libxml2 refuses."""

from __future__ import annotations

import email
import threading
from email import policy

import pytest

from jobs.normalization import html
from jobs.normalization.html import _stdlib_html_to_text, html_to_text
from tests.conftest import SHARED_CORPUS

BOTH = pytest.mark.parametrize(
    "convert", [html_to_text, _stdlib_html_to_text], ids=["libxml2", "stdlib"]
)


@BOTH
@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("<p>One</p><p>Two &amp; three</p>", "One\nTwo & three"),
        ("<div><ul><li>a</li><li>b</li></ul></div>after", "a\nb\nafter"),
        ("line<br>break<br/>again", "line\nbreak\nagain"),
        ("<table><tr><td>x</td><td>y</td></tr></table>", "x y"),
        ("<pre>  keep\n    this</pre><p>a   b\n c</p>", "keep\nthis\na b c"),
        (
            "<html><head><title>T</title><style>p{}</style></head>"
            "<body><script>var x;</script><p>body</p></body></html>",
            "body",
        ),
        # a missing </head> must not swallow the whole document
        ("<html><head><title>T</title><body><p>still here</p>", "still here"),
        ("caf&eacute;&nbsp;&#169; &bogus;", "café © &bogus;"),
        ("<!-- hidden --><p>shown</p><?pi x?>", "shown"),
        ("<p>one</p>\n\n\n\n<p>two</p>", "one\ntwo"),
        ("", ""),
        ("plain text, no tags", "plain text, no tags"),
    ],
)
def test_blocks_lines_skipped_elements_and_entities(convert, markup, expected) -> None:
    assert convert(markup) == expected


@BOTH
def test_a_declared_charset_does_not_change_text_already_decoded(convert) -> None:
    markup = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
        "</head><body><p>café ☃ 日本</p></body></html>"
    )
    assert convert(markup) == "café ☃ 日本"


def test_what_libxml2_refuses_is_read_by_the_stdlib_parser_and_the_next_document_is_not_hurt():
    # libxml2 takes no lone surrogate (a str it cannot encode); the stdlib parser reads it
    assert html_to_text("bad \ud800 surrogate <p>x</p>") == "bad \ud800 surrogate\nx"
    assert html_to_text("<p>next</p><p>document</p>") == "next\ndocument"
    assert html_to_text("") == ""
    assert html_to_text("<p>after an empty one</p>") == "after an empty one"


def test_max_chars_stops_reading_and_the_kept_parser_starts_clean() -> None:
    huge = "<p>" + "word " * 2_000_000 + "</p><p>END</p>"  # 10 MB of text
    text = html_to_text(huge, max_chars=1000)
    assert len(text) == 1000 and text.startswith("word word")
    # the thread's parser was left mid-document: the next document is read from its start
    assert html_to_text("<p>fresh</p>") == "fresh"


def test_each_thread_reads_with_its_own_parser() -> None:
    results: dict[int, list[str]] = {}

    def convert(n: int) -> None:
        results[n] = [
            html_to_text(f"<div><p>thread {n}</p><p>doc {i}</p></div>") for i in range(300)
        ]

    threads = [threading.Thread(target=convert, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in range(4):
        assert results[n] == [f"thread {n}\ndoc {i}" for i in range(300)]


def _corpus_html_parts() -> list[tuple[str, str]]:
    mail = SHARED_CORPUS / "mail"
    if not mail.is_dir():
        return []
    parts = []
    for path in sorted(p for p in mail.iterdir() if p.is_file()):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.compat32)
        for n, part in enumerate(message.walk()):
            if part.get_content_type() == "text/html":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    parts.append((f"{path.name}#{n}", payload.decode("utf-8", "replace")))
    return parts


CORPUS_HTML = _corpus_html_parts()


@pytest.mark.skipif(not CORPUS_HTML, reason="shared corpus not found")
def test_both_parsers_give_the_same_text_for_every_html_part_of_the_shared_corpus() -> None:
    differing = [
        name
        for name, markup in CORPUS_HTML
        if html_to_text(markup, max_chars=100_001)
        != _stdlib_html_to_text(markup, max_chars=100_001)
    ]
    assert len(CORPUS_HTML) >= 20
    assert differing == []


def test_libxml2_reads_documents_not_the_stdlib_parser(monkeypatch) -> None:
    # the fast path is taken: with the stdlib parser gone, well-formed markup still converts
    def refuse(*args, **kwargs):
        raise AssertionError("the stdlib parser was used")

    monkeypatch.setattr(html, "_stdlib_html_to_text", refuse)
    assert html_to_text("<p>a</p><p>b</p>") == "a\nb"


def test_a_parser_left_mid_document_by_an_exception_is_not_reused(monkeypatch) -> None:
    # lxml binds its target's methods when the parser is made: this thread's is made anew here
    monkeypatch.setattr(html, "_local", threading.local())
    pieces = []

    def interrupt_in_script(self, data):
        pieces.append(data)
        if data.startswith("var"):
            raise KeyboardInterrupt  # no Exception: the parser is left inside the <script>

    with monkeypatch.context() as patch:
        patch.setattr(html._Text, "data", interrupt_in_script)
        with pytest.raises(KeyboardInterrupt):
            html_to_text("<p>before</p><script>var x = 1; " + "y = 2; " * 10_000)
    assert pieces[-1].startswith("var")
    assert html_to_text("<p>the next document</p>") == "the next document"
