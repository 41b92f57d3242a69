"""A corpus of hand-made RFC 822 messages through convert and parse_gmail_message, one test each."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from jobs.normalization.gmail import parse_gmail_message
from jobs.normalization.types import NormalizationError, ParsedInteraction
from jobs.sync.convert import gmail_message_from_rfc822

FETCHED_AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
OWN = frozenset({"ada@example.com", "ada.sales@example.io"})
CRLF = b"\r\n"


def rfc822(
    headers: list[tuple[str, str | bytes]], body: bytes = b"", *, eol: bytes = CRLF
) -> bytes:
    """Raw message bytes exactly as given: values may be str (ASCII/UTF-8) or raw bytes."""
    lines = [
        name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        for name, value in headers
    ]
    return eol.join(lines) + eol + eol + body


def part(content_type: str, body: bytes, *extra: tuple[str, str]) -> bytes:
    return rfc822([("Content-Type", content_type), *extra], body)


def multipart(subtype: str, boundary: str, *parts: bytes, close: bool = True) -> bytes:
    marker = b"--" + boundary.encode()
    out = b"".join(marker + CRLF + p + CRLF for p in parts)
    return out + (marker + b"--" + CRLF if close else b"")


def b_word(text: str, charset: str = "utf-8") -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


def basic(*extra: tuple[str, str | bytes], sender: str = "John <john@example.org>") -> list:
    return [
        ("From", sender),
        ("To", "Ada <ada@example.com>"),
        ("Subject", "Hello"),
        ("Date", "Tue, 03 Mar 2026 10:00:00 -0800"),
        ("Message-ID", "<m@example.org>"),
        ("MIME-Version", "1.0"),
        *extra,
    ]


def with_subject(subject: str | bytes, *extra: tuple[str, str | bytes]) -> list:
    return [h for h in basic(*extra) if h[0] != "Subject"] + [("Subject", subject)]


def without(name: str, headers: list) -> list:
    return [h for h in headers if h[0] != name]


@dataclass(frozen=True)
class Case:
    id: str
    raw: bytes
    subject: str | None = None
    body_has: tuple[str, ...] = ()
    body_lacks: tuple[str, ...] = ()
    body_source: str | None = None
    sender: str | None = "john@example.org"
    direction: str = "inbound"
    convert: dict = field(default_factory=dict)
    own: frozenset[str] = OWN
    check: Callable[[ParsedInteraction, dict], None] | None = None


def _check_five_mb(p: ParsedInteraction, full: dict) -> None:
    assert len(p.body_text) == 100_000
    assert p.metadata["body_truncated"] is True


def _check_display_name(p: ParsedInteraction, full: dict) -> None:
    assert p.metadata["from"] == {"name": "Doe, John", "email": "john.doe@x.org"}


def _check_encoded_name(p: ParsedInteraction, full: dict) -> None:
    assert p.metadata["from"] == {"name": "Jörg Müller", "email": "joerg@example.de"}


def _check_missing_date(p: ParsedInteraction, full: dict) -> None:
    assert p.occurred_at == FETCHED_AT
    assert p.occurred_at_estimated is True
    assert p.metadata["date_header"] is None


def _check_date_header(p: ParsedInteraction, full: dict) -> None:
    assert p.occurred_at == datetime(2026, 3, 3, 18, 0, tzinfo=UTC)
    assert p.occurred_at_estimated is False


def _check_internal_date(p: ParsedInteraction, full: dict) -> None:
    assert p.occurred_at == datetime(2026, 3, 4, 8, 0, tzinfo=UTC)
    assert p.occurred_at.tzinfo is UTC


def _check_missing_from(p: ParsedInteraction, full: dict) -> None:
    assert p.metadata["from"] is None


def _check_reply(p: ParsedInteraction, full: dict) -> None:
    root = gmail_message_from_rfc822(rfc822([("Message-ID", "<root@example.org>")], b"x"))
    assert p.thread_id == root["id"]
    assert p.metadata["in_reply_to"] == "<mid@example.org>"
    assert p.metadata["references"] == ["<root@example.org>", "<mid@example.org>"]


def _check_forward(p: ParsedInteraction, full: dict) -> None:
    assert [a["mime_type"] for a in p.metadata["attachments"]] == ["message/rfc822"]


def _check_nested(p: ParsedInteraction, full: dict) -> None:
    assert p.metadata["attachments"] == [
        {"filename": "logo.png", "mime_type": "image/png", "size": 8},
        {"filename": "terms.pdf", "mime_type": "application/pdf", "size": 9},
    ]


def _check_invite(p: ParsedInteraction, full: dict) -> None:
    assert [a["filename"] for a in p.metadata["attachments"]] == ["invite.ics"]


def _check_idn(p: ParsedInteraction, full: dict) -> None:
    assert p.metadata["to"] == [{"name": "Max", "email": "max@münchen.de"}]


def _check_cc_bcc(p: ParsedInteraction, full: dict) -> None:
    assert [a["email"] for a in p.metadata["cc"]] == ["bob@example.net", "carol@example.net"]
    assert p.metadata["cc"][1]["name"] == "Carol, Ph.D."
    assert [a["email"] for a in p.metadata["bcc"]] == ["dave@example.net"]


def _check_invalid_addresses(p: ParsedInteraction, full: dict) -> None:
    assert [a["email"] for a in p.metadata["to"]] == ["ok@x.org", "also@y.org"]


def _check_group(p: ParsedInteraction, full: dict) -> None:
    assert p.metadata["to"] == []


def _check_reply_to(p: ParsedInteraction, full: dict) -> None:
    assert p.metadata["reply_to"] == [{"name": "Support", "email": "help@example.org"}]


def _check_labels(p: ParsedInteraction, full: dict) -> None:
    assert p.metadata["labels"] == ["SENT"]


def _check_deep(p: ParsedInteraction, full: dict) -> None:
    assert p.body_text == ""


def _check_attachment_only(p: ParsedInteraction, full: dict) -> None:
    assert p.metadata["attachments"][0]["filename"] == "scan.pdf"


def _check_encoded_filename(p: ParsedInteraction, full: dict) -> None:
    assert p.metadata["attachments"][0]["filename"] == "Übersicht.pdf"


def _check_html_structure(p: ParsedInteraction, full: dict) -> None:
    assert "Line one\nLine two" in p.body_text
    assert "first item\nsecond item" in p.body_text


def _check_snippet(p: ParsedInteraction, full: dict) -> None:
    assert p.metadata["snippet"] == "Tom & Jerry's notes"


DEEP = b"leaf"
for depth in range(40):
    DEEP = part(f'multipart/mixed; boundary="d{depth}"', multipart("mixed", f"d{depth}", DEEP))

BIG_BODY = b"".join(b"%06d lorem ipsum dolor sit amet consectetur\r\n" % i for i in range(104_000))

CASES = [
    Case(
        "single_part_plain_text",
        rfc822(basic(("Content-Type", "text/plain; charset=us-ascii")), b"Plain hello.\r\n"),
        subject="Hello",
        body_has=("Plain hello.",),
        body_source="plain",
    ),
    Case(
        "multipart_alternative_prefers_plain",
        rfc822(
            basic(("Content-Type", 'multipart/alternative; boundary="alt"')),
            multipart(
                "alternative",
                "alt",
                part("text/plain; charset=utf-8", "Plain wins ✓".encode()),
                part("text/html; charset=utf-8", b"<p>HTML loses</p>"),
            ),
        ),
        body_has=("Plain wins ✓",),
        body_lacks=("HTML loses",),
        body_source="plain",
    ),
    Case(
        "html_only_is_converted_to_text",
        rfc822(
            basic(("Content-Type", "text/html; charset=utf-8")),
            b"<html><head><title>T</title><style>p{color:red}</style></head><body>"
            b"<p>Dear Ada,</p><p>Caf&eacute; &amp; <a href='https://x.org'>our menu</a></p>"
            b"<script>alert(1)</script></body></html>",
        ),
        body_has=("Dear Ada,\nCafé & our menu",),
        body_lacks=("alert", "color:red", "<p>", "https://x.org"),
        body_source="html",
    ),
    Case(
        "html_blocks_lists_and_breaks_become_lines",
        rfc822(
            basic(("Content-Type", "text/html")),
            b"<div>Line one<br>Line two</div><ul><li>first item</li><li>second item</li></ul>",
        ),
        body_source="html",
        check=_check_html_structure,
    ),
    Case(
        "latin1_quoted_printable_body",
        rfc822(
            basic(
                ("Content-Type", "text/plain; charset=iso-8859-1"),
                ("Content-Transfer-Encoding", "quoted-printable"),
            ),
            b"Gr=FC=DFe aus M=FCnchen, bis bald!\r\n",
        ),
        body_has=("Grüße aus München",),
    ),
    Case(
        "windows1252_body_keeps_curly_quotes_and_euro",
        rfc822(
            basic(("Content-Type", "text/plain; charset=windows-1252")),
            "Price: “100 €” \u2013 final".encode("cp1252"),
        ),
        body_has=("“100 €” \u2013 final",),
    ),
    Case(
        "iso2022jp_body",
        rfc822(
            basic(("Content-Type", "text/plain; charset=ISO-2022-JP")),
            "こんにちは、田中です。".encode("iso-2022-jp"),
        ),
        body_has=("こんにちは、田中です。",),
    ),
    Case(
        "utf16_body_with_bom",
        rfc822(
            basic(
                ("Content-Type", "text/plain; charset=utf-16"),
                ("Content-Transfer-Encoding", "base64"),
            ),
            base64.encodebytes("Grüße in UTF-16".encode("utf-16")),
        ),
        body_has=("Grüße in UTF-16",),
    ),
    Case(
        "rfc2047_base64_subject",
        rfc822(with_subject(b_word("Grüße \u2013 Angebot für Q2"))),
        subject="Grüße \u2013 Angebot für Q2",
    ),
    Case(
        "rfc2047_quoted_printable_subject",
        rfc822(with_subject("Re: =?iso-8859-1?Q?Caf=E9_cr=E8me?= tonight")),
        subject="Re: Café crème tonight",
    ),
    Case(
        "rfc2047_subject_split_across_words",
        rfc822(
            with_subject(
                "=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n"
                " =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?="
            )
        ),
        subject="こんにちはこんにちは",
    ),
    Case(
        "rfc2047_words_split_inside_a_character",
        rfc822(with_subject("=?utf-8?B?R3LDvMOf?= =?utf-8?B?w58=?=")),
        subject="Grüßß",
    ),
    Case(
        "malformed_encoded_word_is_kept_literally",
        rfc822(with_subject("=?utf-8?Q?unterminated and =?utf-8?B?***?= junk")),
        subject="=?utf-8?Q?unterminated and junk",
    ),
    Case(
        "encoded_word_with_unknown_charset_falls_back_to_utf8",
        rfc822(with_subject("=?x-nonsense?Q?caf=C3=A9?=")),
        subject="café",
    ),
    Case(
        "raw_utf8_subject_without_encoding",
        rfc822(with_subject("Überweisung erhalten ✓".encode())),
        subject="Überweisung erhalten ✓",
    ),
    Case(
        "raw_latin1_subject_byte",
        rfc822(with_subject(b"Caf\xe9 menu")),
        subject="Café menu",
    ),
    Case(
        "folded_subject_is_unfolded",
        rfc822(with_subject("A long subject\r\n\tthat was folded")),
        subject="A long subject that was folded",
    ),
    Case(
        "missing_subject_is_empty",
        rfc822(without("Subject", basic()), b"x"),
        subject="",
    ),
    Case(
        "display_name_with_quoted_comma",
        rfc822(basic(sender='"Doe, John" <John.Doe@X.org>'), b"hi"),
        sender="john.doe@x.org",
        check=_check_display_name,
    ),
    Case(
        "encoded_word_display_name",
        rfc822(basic(sender="=?utf-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>"), b"hi"),
        sender="joerg@example.de",
        check=_check_encoded_name,
    ),
    Case(
        "missing_date_uses_fetch_time_as_estimate",
        rfc822(without("Date", basic()), b"undated"),
        convert={"internal_date_ms": 0},
        check=_check_missing_date,
    ),
    Case(
        "date_header_when_internal_date_is_absent",
        rfc822(basic(), b"dated"),
        convert={"internal_date_ms": 0},
        check=_check_date_header,
    ),
    Case(
        "internal_date_wins_over_date_header",
        rfc822(basic(("Received", "from a by mx; Wed, 04 Mar 2026 08:00:00 +0000")), b"x"),
        check=_check_internal_date,
    ),
    Case(
        "missing_from_is_not_an_error",
        rfc822(without("From", basic()), b"anonymous"),
        sender=None,
        check=_check_missing_from,
    ),
    Case(
        "broken_base64_body_is_decoded_as_far_as_possible",
        rfc822(
            basic(
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Transfer-Encoding", "base64"),
            ),
            base64.encodebytes(b"Decoded despite damage")[:-3] + b"!!*\r\n",
        ),
        body_has=("Decoded despite dama",),
    ),
    Case(
        "five_megabyte_body_is_truncated",
        rfc822(basic(("Content-Type", "text/plain")), BIG_BODY + b"END-MARKER\r\n"),
        body_has=("000000 lorem ipsum",),
        body_lacks=("END-MARKER",),
        check=_check_five_mb,
    ),
    Case(
        "calendar_invitation_uses_the_text_part",
        rfc822(
            basic(("Content-Type", 'multipart/mixed; boundary="mix"')),
            multipart(
                "mixed",
                "mix",
                part(
                    'multipart/alternative; boundary="alt"',
                    multipart(
                        "alternative",
                        "alt",
                        part("text/plain; charset=utf-8", b"You have been invited to Kickoff"),
                        part(
                            "text/calendar; charset=utf-8; method=REQUEST",
                            b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR",
                        ),
                        part("text/html; charset=utf-8", b"<p>Invitation HTML</p>"),
                    ),
                ),
                part(
                    'application/ics; name="invite.ics"',
                    b"QkVHSU46VkNBTEVOREFS",
                    ("Content-Disposition", 'attachment; filename="invite.ics"'),
                    ("Content-Transfer-Encoding", "base64"),
                ),
            ),
        ),
        body_has=("You have been invited to Kickoff",),
        body_lacks=("BEGIN:VCALENDAR", "Invitation HTML"),
        check=_check_invite,
    ),
    Case(
        "reply_threads_to_the_root_message",
        rfc822(
            basic(
                ("In-Reply-To", "<mid@example.org>"),
                ("References", "<root@example.org>\r\n <mid@example.org>"),
            ),
            b"Sounds good.\r\n\r\n> earlier text",
        ),
        body_has=("Sounds good.",),
        check=_check_reply,
    ),
    Case(
        "forwarded_message_attachment_is_not_body",
        rfc822(
            basic(("Content-Type", 'multipart/mixed; boundary="fwd"')),
            multipart(
                "mixed",
                "fwd",
                part("text/plain", b"FYI, see the attached message."),
                part(
                    "message/rfc822",
                    rfc822([("From", "x@y.org"), ("Subject", "Inner")], b"Inner secret body"),
                ),
            ),
        ),
        body_has=("FYI, see the attached message.",),
        body_lacks=("Inner secret body",),
        check=_check_forward,
    ),
    Case(
        "nested_mixed_related_alternative",
        rfc822(
            basic(("Content-Type", 'multipart/mixed; boundary="m"')),
            multipart(
                "mixed",
                "m",
                part(
                    'multipart/related; boundary="r"',
                    multipart(
                        "related",
                        "r",
                        part(
                            'multipart/alternative; boundary="a"',
                            multipart(
                                "alternative",
                                "a",
                                part(
                                    "text/plain; charset=utf-8", "Nested plain \u2013 ok".encode()
                                ),
                                part("text/html", b"<p>Nested <img src='cid:logo'></p>"),
                            ),
                        ),
                        part(
                            "image/png",
                            b"iVBORw0KGgo=",
                            ("Content-Transfer-Encoding", "base64"),
                            ("Content-Disposition", 'inline; filename="logo.png"'),
                            ("Content-ID", "<logo>"),
                        ),
                    ),
                ),
                part(
                    'application/pdf; name="terms.pdf"',
                    b"JVBERi0xLjQK",
                    ("Content-Transfer-Encoding", "base64"),
                    ("Content-Disposition", "attachment"),
                ),
            ),
        ),
        body_has=("Nested plain \u2013 ok",),
        check=_check_nested,
    ),
    Case(
        "inline_text_parts_around_an_image_are_joined",
        rfc822(
            basic(("Content-Type", 'multipart/mixed; boundary="apple"')),
            multipart(
                "mixed",
                "apple",
                part("text/plain", b"Part one"),
                part(
                    "image/jpeg",
                    b"/9j/4AAQ",
                    ("Content-Transfer-Encoding", "base64"),
                    ("Content-Disposition", 'inline; filename="photo.jpg"'),
                ),
                part("text/plain", b"Part two"),
            ),
        ),
        body_has=("Part one\n\nPart two",),
    ),
    Case(
        "text_attachment_is_not_body",
        rfc822(
            basic(("Content-Type", 'multipart/mixed; boundary="t"')),
            multipart(
                "mixed",
                "t",
                part("text/plain", b"See notes."),
                part(
                    "text/plain",
                    b"SECRET NOTES",
                    ("Content-Disposition", 'attachment; filename="notes.txt"'),
                ),
                part("text/plain", b"UNNAMED ATTACHMENT", ("Content-Disposition", "attachment")),
            ),
        ),
        body_has=("See notes.",),
        body_lacks=("SECRET", "UNNAMED"),
    ),
    Case(
        "encoded_attachment_filename",
        rfc822(
            basic(("Content-Type", 'multipart/mixed; boundary="f"')),
            multipart(
                "mixed",
                "f",
                part("text/plain", b"attached"),
                part(
                    "application/pdf",
                    b"JVBERg==",
                    ("Content-Transfer-Encoding", "base64"),
                    (
                        "Content-Disposition",
                        "attachment; filename*=utf-8''%C3%9Cbersicht.pdf",
                    ),
                ),
            ),
        ),
        check=_check_encoded_filename,
    ),
    Case(
        "attachment_only_message_has_no_body",
        rfc822(
            basic(
                ("Content-Type", 'application/pdf; name="scan.pdf"'),
                ("Content-Transfer-Encoding", "base64"),
            ),
            b"JVBERi0xLjQK",
        ),
        body_source="none",
        check=_check_attachment_only,
    ),
    Case(
        "idn_domain_is_stored_as_unicode",
        rfc822(
            [h for h in basic() if h[0] != "To"] + [("To", "Max <max@XN--MNCHEN-3YA.DE>")],
            b"x",
        ),
        check=_check_idn,
    ),
    Case(
        "cc_and_bcc_are_parsed",
        rfc822(
            basic(
                ("Cc", 'bob@example.net, "Carol, Ph.D." <Carol@Example.NET>'),
                ("Bcc", "<dave@example.net>"),
            ),
            b"x",
        ),
        check=_check_cc_bcc,
    ),
    Case(
        "invalid_addresses_are_dropped",
        rfc822(
            [h for h in basic() if h[0] != "To"]
            + [("To", "not an address, ok@x.org, <>, @nolocal, Also <also@y.org>")],
            b"x",
        ),
        check=_check_invalid_addresses,
    ),
    Case(
        "undisclosed_recipients_group_gives_no_addresses",
        rfc822([h for h in basic() if h[0] != "To"] + [("To", "undisclosed-recipients:;")]),
        check=_check_group,
    ),
    Case(
        "reply_to_is_parsed",
        rfc822(basic(("Reply-To", "Support <help@example.org>")), b"x"),
        check=_check_reply_to,
    ),
    Case(
        "addresses_in_comments_syntax",
        rfc822(basic(sender="john@example.org (John Smith)"), b"x"),
        sender="john@example.org",
    ),
    Case(
        "outbound_from_the_account_address_without_labels",
        rfc822(basic(sender="Ada <Ada@Example.com>"), b"sent by me"),
        convert={"default_label_ids": ()},
        sender="ada@example.com",
        direction="outbound",
    ),
    Case(
        "outbound_from_a_send_as_alias_without_labels",
        rfc822(basic(sender="Ada Sales <ada.sales@example.io>"), b"sent by my alias"),
        convert={"default_label_ids": ()},
        sender="ada.sales@example.io",
        direction="outbound",
    ),
    Case(
        "sent_label_decides_without_own_addresses",
        rfc822(basic(), b"x"),
        convert={"label_ids": ["SENT"]},
        own=frozenset(),
        direction="outbound",
        check=_check_labels,
    ),
    Case(
        "sent_label_decides_when_from_is_missing",
        rfc822(without("From", basic()), b"x"),
        convert={"label_ids": ["SENT"]},
        sender=None,
        direction="outbound",
    ),
    Case(
        # item 16: mail sent from an alias the account does not know (yet) is still outbound
        "the_sent_label_beats_the_from_address",
        rfc822(basic(), b"x"),
        convert={"label_ids": ["SENT"]},
        direction="outbound",
    ),
    Case(
        "wrong_declared_charset_falls_back",
        rfc822(
            basic(("Content-Type", "text/plain; charset=utf-8")), "Grüße, Müller".encode("cp1252")
        ),
        body_has=("Grüße, Müller",),
    ),
    Case(
        "unknown_charset_is_read_as_utf8",
        rfc822(basic(("Content-Type", "text/plain; charset=x-unknown")), "naïve café".encode()),
        body_has=("naïve café",),
    ),
    Case(
        "nul_bytes_are_removed",
        rfc822(basic(("Content-Type", "text/plain")), b"before\x00after"),
        body_has=("beforeafter",),
    ),
    Case(
        "lf_only_line_endings",
        rfc822(basic(("Content-Type", "text/plain")), b"unix\nlines\n", eol=b"\n"),
        subject="Hello",
        body_has=("unix\nlines",),
    ),
    Case(
        "missing_final_boundary",
        rfc822(
            basic(("Content-Type", 'multipart/alternative; boundary="open"')),
            multipart("alternative", "open", part("text/plain", b"Still readable"), close=False),
        ),
        body_has=("Still readable",),
    ),
    Case(
        "headers_only_message",
        rfc822(basic()),
        body_source="none",
    ),
    Case(
        "deeply_nested_multiparts_do_not_crash",
        rfc822(basic(("Content-Type", 'multipart/mixed; boundary="top"')), DEEP),
        check=_check_deep,
    ),
    Case(
        "html_entities_in_the_snippet_are_unescaped",
        rfc822(basic(("Content-Type", "text/html")), b"<p>Tom &amp; Jerry&#39;s notes</p>"),
        body_has=("Tom & Jerry's notes",),
        check=_check_snippet,
    ),
    Case(
        "obsolete_date_with_named_zone",
        rfc822(
            [h for h in basic() if h[0] != "Date"] + [("Date", "Tue, 3 Mar 2026 10:00:00 PST")],
            b"x",
        ),
        convert={"internal_date_ms": 0},
        check=_check_date_header,
    ),
]


def normalize(case: Case) -> tuple[ParsedInteraction, dict]:
    full = gmail_message_from_rfc822(case.raw, **case.convert)
    return parse_gmail_message(full, own_addresses=case.own, fetched_at=FETCHED_AT), full


def test_the_corpus_has_at_least_forty_distinct_messages() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_corpus_message_normalizes_as_expected(case: Case) -> None:
    interaction, full = normalize(case)
    assert interaction.source == "gmail"
    assert interaction.source_id == full["id"]
    assert interaction.thread_id == full["threadId"]
    assert interaction.occurred_at.utcoffset().total_seconds() == 0
    if case.subject is not None:
        assert interaction.subject == case.subject
    for text in case.body_has:
        assert text in interaction.body_text
    for text in case.body_lacks:
        assert text not in interaction.body_text
    if case.body_source is not None:
        assert interaction.metadata["body_source"] == case.body_source
    sender = interaction.metadata["from"]
    assert (sender["email"] if sender else None) == case.sender
    assert interaction.direction == case.direction
    assert interaction.kind == f"email_{case.direction}"
    if case.check is not None:
        case.check(interaction, full)
    json.dumps(interaction.metadata)
    assert "\x00" not in interaction.body_text + json.dumps(interaction.metadata)


def test_a_message_without_payload_is_a_normalization_error() -> None:
    full = gmail_message_from_rfc822(CASES[0].raw)
    del full["payload"]
    with pytest.raises(NormalizationError, match="payload"):
        parse_gmail_message(full, own_addresses=OWN, fetched_at=FETCHED_AT)


def test_a_message_without_id_is_a_normalization_error() -> None:
    with pytest.raises(NormalizationError, match="id"):
        parse_gmail_message({"payload": {}}, own_addresses=OWN, fetched_at=FETCHED_AT)


def test_a_smaller_body_cap_is_honoured() -> None:
    full = gmail_message_from_rfc822(CASES[0].raw)
    interaction = parse_gmail_message(
        full, own_addresses=OWN, fetched_at=FETCHED_AT, max_body_chars=5
    )
    assert interaction.body_text == "Plain"
    assert interaction.metadata["body_truncated"] is True


def test_padded_and_standard_base64_body_data_is_accepted() -> None:
    full = gmail_message_from_rfc822(rfc822(basic(), b"Padded? yes>>>"))
    data = base64.b64encode(b"Padded? yes>>>").decode()
    full["payload"]["body"]["data"] = data
    interaction = parse_gmail_message(full, own_addresses=OWN, fetched_at=FETCHED_AT)
    assert interaction.body_text == "Padded? yes>>>"
