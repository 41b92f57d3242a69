"""Hypothesis strategies for hostile provider data: Gmail messages, Calendar events, RFC 822 bytes.

Each strategy builds what a provider (or a mailbox file) can hand us, mostly well formed with
random corruption mixed in: keys missing or of the wrong JSON type, multipart trees nested deep,
headers huge or repeated thousands of times, base64 that is not, charsets nobody knows, dates
that do not exist, attendee lists that are not lists. Only JSON values are generated for the
resources (they reach us through json.loads), so anything here can be stored in a RawEvent.
"""

from __future__ import annotations

import base64
import json
import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

# Reproducible in CI: derandomized (the same examples every run) and no example database.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    # FUZZ_NO_SHRINK=1 while hunting: report the first failing example as drawn
    phases=[Phase.explicit, Phase.generate]
    if os.environ.get("FUZZ_NO_SHRINK")
    else [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)

# --- building blocks ---------------------------------------------------------------------------

JSON_SCALAR = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8)
JSON_ANY = st.recursive(
    JSON_SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
# text as mail carries it: control characters, NULs, lone surrogates, right-to-left marks...
NASTY_TEXT = st.text(
    st.characters(codec=None, exclude_categories=()), max_size=40
) | st.sampled_from(
    ["\x00", "\ud800", "\udfff", "\u202e", "\ufeff", "\r\n ", "\t", "=?", "?=", "\\", '"', "<>"]
)
CHARSETS = st.sampled_from(
    [
        "utf-8", "UTF-8", '"utf-8"', "us-ascii", "iso-8859-1", "latin1", "windows-1252",
        "koi8-r", "shift_jis", "iso-2022-jp", "gb2312", "big5", "utf-16", "utf-16-le", "utf-7",
        "utf-32", "ks_c_5601-1987", "x-unknown-klingon", "rot13", "base64", "zlib", "hex",
        "idna", "punycode", "unicode_escape", "undefined", "charmap", "", "utf-8\x00", "8bit",
        "unknown-8bit", "x-user-defined", "\u00e9", "  utf-8  ", "utf-8; format=flowed",
    ]
) | st.text(max_size=10)  # fmt: skip
DATES = st.sampled_from(
    [
        "Tue, 3 Mar 2026 10:00:00 +0000", "3 Mar 2026 10:00:00 GMT", "Tue, 31 Feb 2026 10:00:00",
        "Mon, 1 Jan 0001 00:00:00 -1200", "Fri, 31 Dec 9999 23:59:59 -2359",
        "Sat, 1 Jan 10000 00:00:00 +0000", "Tue, 3 Mar 2026 25:61:61 +9999", "yesterday", "",
        "Tue, 3 Mar 26 10:00 EST", "Tue, 3 Mar 2026 10:00:00 +0000 (UTC) trailing junk",
        "2026-03-03T10:00:00Z", "Thu, 01 Jan 1970 00:00:00 +0000", "0", "-1",
        "Tue, 3 Mar 99999999999999999999 10:00:00 +0000",
    ]
) | st.text(max_size=30)  # fmt: skip
INTERNAL_DATES = (
    st.integers(-(2**64), 2**64).map(str)
    | st.integers(-(2**64), 2**64)
    | st.sampled_from(["", "abc", "1e20", "9" * 40, "1772532000000", "-0", " 12 "])
    | JSON_SCALAR
)
ADDRESSES = st.sampled_from(
    [
        "ada@example.com", '"Doe, John" <j@x.org>', "=?utf-8?B?w7Zsw6Q=?= <o@x.org>",
        "=?x-klingon?Q?qa=FF?= <k@x.org>", "undisclosed-recipients:;", "a@xn--mnchen-3ya.de",
        "a@xn--zz.de", "<>", "@", "no-at-sign", "a@b@c", "(comment) a@b.c (more)",
        "Group: a@b.c, c@d.e;", '"unterminated <a@b.c>', "a@b.c, , ,, d@e.f",
        "\u0430\u0434\u0430@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
    ]
) | NASTY_TEXT  # fmt: skip
HEADER_NAMES = st.sampled_from(
    [
        "From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To",
        "References", "Received", "Content-Type", "Content-Disposition",
        "Content-Transfer-Encoding", "MIME-Version", "X-Mailer",
    ]
)  # fmt: skip
ENCODED_WORDS = st.builds(
    lambda charset, kind, text: f"=?{charset}?{kind}?{text}?=",
    CHARSETS,
    st.sampled_from(["B", "Q", "b", "q", "X", ""]),
    st.text(max_size=20) | st.just("w7Zsw6Q") | st.just("caf=C3=A9") | st.just("!!!"),
)


def _header_value(name: str) -> st.SearchStrategy[str]:
    lowered = name.lower()
    if lowered in ("from", "to", "cc", "bcc", "reply-to"):
        return st.lists(ADDRESSES, max_size=5).map(", ".join)
    if lowered == "date":
        return DATES
    if lowered == "received":
        return DATES.map(lambda d: f"from mx.example.com by mx.google.com; {d}")
    if lowered == "content-type":
        return st.builds(
            lambda mime, charset: f"{mime}; charset={charset}", MIME_TYPES_TEXT, CHARSETS
        )
    return st.lists(NASTY_TEXT | ENCODED_WORDS, max_size=4).map(" ".join)


HEADER = HEADER_NAMES.flatmap(
    lambda name: st.fixed_dictionaries({"name": st.just(name), "value": _header_value(name)})
)
ODD_HEADER = st.one_of(
    JSON_ANY,  # not a header object at all
    st.fixed_dictionaries({}, optional={"name": JSON_ANY, "value": JSON_ANY}),
    st.builds(lambda n, v: {"name": n, "value": v}, HEADER_NAMES, st.integers() | st.none()),
)
HUGE_HEADER = st.sampled_from(["Subject", "To", "References", "X-Junk", "From"]).flatmap(
    lambda name: st.integers(10_000, 300_000).map(
        lambda n: {
            "name": name,
            "value": (
                "a@b.c, "
                if name in ("To", "From")
                else "<x@y> "
                if name == "References"
                else "Wörd "
            )
            * (n // 6),
        }
    )
)
MANY_HEADERS = st.integers(100, 3000).map(
    lambda n: [{"name": "Received", "value": f"from h{i} by h{i + 1}; junk"} for i in range(n)]
)
HEADERS = (
    st.lists(st.one_of(HEADER, HEADER, HEADER, ODD_HEADER, HUGE_HEADER), max_size=10)
    | MANY_HEADERS
    | JSON_ANY
)

MIME_TYPES_TEXT = st.sampled_from(["text/plain", "text/html", "TEXT/PLAIN", "text/enriched"])
MIME_TYPES_LEAF = MIME_TYPES_TEXT | st.sampled_from(
    [
        "application/pdf", "image/png", "message/rfc822", "text/calendar",
        "application/octet-stream", "", "garbage", "text/", "/plain",
    ]
)  # fmt: skip
MIME_TYPES_MULTI = st.sampled_from(
    [
        "multipart/mixed",
        "multipart/alternative",
        "multipart/related",
        "multipart/signed",
        "MULTIPART/X",
    ]
)

HTML = st.sampled_from(
    [
        "<p>Hello <b>there</b></p>", "<html><head><title>t</title><body>x", "<script>alert(1)",
        "<![CDATA[", "<!--", "<table><tr><td>a<td>b</table>", "&#0;&#xD800;&#x110000;&bogus;",
        "<pre>  keep\n  me</pre>", "<" * 50, "<a href='x'>" * 200, "</p>" * 100, "<svg><style>",
    ]
)  # fmt: skip


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _encode(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset.strip().strip('"'))
    except (LookupError, ValueError, TypeError):
        return text.encode("utf-8", "surrogatepass")


BODY_TEXT = st.lists(
    NASTY_TEXT | HTML | st.sampled_from(["\r\n", "\n\n", "é" * 30]), max_size=8
).map("".join)
BODY_DATA = st.one_of(
    st.tuples(BODY_TEXT, CHARSETS).map(lambda tc: _b64url(_encode(*tc))),  # the usual
    st.binary(max_size=200).map(_b64url),  # bytes of no charset at all
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),  # standard alphabet
    st.sampled_from(
        ["!!!", "====", "a", "ab=cd", "\u00e9\u00e9", " \n\t", "-_-_", "%%%%", "A" * 5]
    ),
    st.text(max_size=40),  # anything at all
    st.integers(1_000, 2_000_000).map(lambda n: _b64url(b"x" * n)),  # a large body
    JSON_SCALAR,
)
BODY = st.one_of(
    st.fixed_dictionaries(
        {"size": st.integers(0, 10**6), "data": BODY_DATA},
        optional={"attachmentId": st.text(max_size=10)},
    ),
    st.fixed_dictionaries(
        {}, optional={"size": JSON_ANY, "data": JSON_ANY, "attachmentId": JSON_ANY}
    ),
    JSON_ANY,
)


@st.composite
def _leaf(draw: st.DrawFn) -> dict:
    part: dict = {}
    if draw(st.integers(0, 9)):
        part["mimeType"] = draw(MIME_TYPES_LEAF)
    else:
        part["mimeType"] = draw(JSON_ANY)
    charset = draw(CHARSETS)
    headers = [{"name": "Content-Type", "value": f"{part['mimeType']}; charset={charset}"}]
    if draw(st.booleans()):
        headers.append(
            {
                "name": "Content-Disposition",
                "value": draw(
                    st.sampled_from(["inline", "attachment; filename=a.txt", "ATTACHMENT", "x"])
                ),
            }
        )
    part["headers"] = headers if draw(st.integers(0, 5)) else draw(HEADERS)
    part["filename"] = draw(
        st.sampled_from(["", "", "", "a.pdf", "=?utf-8?B?w7Zs?=.txt", "=?bad"]) | JSON_SCALAR
    )
    if draw(st.integers(0, 3)):
        body = {"size": draw(st.integers(0, 10**6))}
        text = draw(BODY_TEXT)
        body["data"] = (
            _b64url(_encode(text, charset)) if draw(st.integers(0, 3)) else draw(BODY_DATA)
        )
        part["body"] = body
    else:
        part["body"] = draw(BODY)
    for key in draw(
        st.lists(st.sampled_from(["mimeType", "headers", "filename", "body"]), max_size=2)
    ):
        part.pop(key, None)
    return part


def _multipart(children: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    return st.builds(
        lambda mime, parts, extra: {"mimeType": mime, "body": {"size": 0}, "parts": parts, **extra},
        MIME_TYPES_MULTI,
        st.lists(children, max_size=4) | JSON_SCALAR,
        st.fixed_dictionaries({}, optional={"headers": HEADERS, "filename": JSON_SCALAR}),
    )


PART_TREE = st.recursive(_leaf(), _multipart, max_leaves=12)


@st.composite
def deep_tree(draw: st.DrawFn) -> dict:
    """A multipart chain nested `depth` levels, a text part at the bottom."""
    depth = draw(st.integers(30, 400))
    node: dict = {"mimeType": "text/plain", "body": {"size": 5, "data": _b64url(b"deep!")}}
    for _ in range(depth):
        node = {"mimeType": "multipart/mixed", "body": {"size": 0}, "parts": [node]}
    return node


@st.composite
def gmail_messages(draw: st.DrawFn, message_id: str) -> dict:
    """A users.messages resource as the Gmail sync stores it (format=full), or one broken.

    `message_id` is the id the sync stored it under; the resource names it too unless its id is
    one of the things broken.
    """
    message: dict = {
        "id": message_id,
        "threadId": draw(st.text("0123456789abcdef", min_size=1, max_size=16) | JSON_SCALAR),
        "labelIds": draw(
            st.lists(
                st.sampled_from(["INBOX", "SENT", "DRAFT", "UNREAD", "CATEGORY_UPDATES"]),
                max_size=4,
            )
            | st.lists(JSON_SCALAR, max_size=3)
            | JSON_SCALAR
        ),
        "snippet": draw(NASTY_TEXT | HTML | JSON_SCALAR),
        "historyId": draw(st.integers(1, 10**9).map(str)),
        "internalDate": draw(INTERNAL_DATES),
        "sizeEstimate": draw(st.integers(0, 10**8)),
    }
    kind = draw(st.sampled_from(["tree"] * 6 + ["deep", "raw", "odd"]))
    if kind == "raw":  # format=raw: no payload, the whole message as base64url
        message["raw"] = draw(st.binary(max_size=300).map(_b64url))
    elif kind == "odd":
        message["payload"] = draw(JSON_ANY)
    else:
        root = draw(PART_TREE if kind == "tree" else deep_tree())
        top = draw(st.lists(HEADER, max_size=8))
        if isinstance(root.get("headers"), list):
            top = top + root["headers"]
        root["headers"] = top if draw(st.integers(0, 6)) else draw(HEADERS)
        root["partId"] = ""
        message["payload"] = root
    # keys gone missing (the id is broken on its own below, so most resources are readable)
    for key in draw(st.lists(st.sampled_from([k for k in message if k != "id"]), max_size=3)):
        message.pop(key, None)
    if draw(st.integers(0, 9)) == 0:
        message["id"] = draw(JSON_SCALAR)
    if draw(st.integers(0, 19)) == 0:
        message["_deleted"] = draw(JSON_SCALAR)
    json.dumps(message)  # a resource is JSON, nothing else
    return message


# --- Calendar ----------------------------------------------------------------------------------

ZONES = st.sampled_from(
    [
        "UTC", "Europe/Berlin", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Kiritimati",
        "Etc/GMT+12", "Nope/Nope", "", "../../etc/passwd", "/abs", "UTC\x00", "Europe/",
        "W. Europe Standard Time", "america/los_angeles", "\u00e9",
    ]
) | JSON_SCALAR  # fmt: skip
DATE_TEXT = st.sampled_from(
    [
        "2026-03-03", "2026-02-30", "0000-01-01", "0001-01-01", "9999-12-31", "10000-01-01",
        "2026-3-3", "20260303", "2026-W10-2", "", "today", "2026-03-03T10:00:00",
    ]
) | st.dates().map(str)  # fmt: skip
DATETIME_TEXT = st.sampled_from(
    [
        "2026-03-03T10:00:00Z", "2026-03-03T10:00:00+01:00", "2026-03-03T10:00:00",
        "2026-03-03T10:00:00+25:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
        "2026-03-03T24:00:00Z", "2026-03-03 10:00", "2026-03-03T10:00:00.123456789Z",
        "2026-03-03T10:00:00Z[Europe/Berlin]", "not a time", "",
    ]
) | st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat())  # fmt: skip
EVENT_TIME = (
    st.fixed_dictionaries(
        {},
        optional={
            "date": DATE_TEXT | JSON_SCALAR,
            "dateTime": DATETIME_TEXT | JSON_SCALAR,
            "timeZone": ZONES,
        },
    )
    | JSON_ANY
)
ATTENDEE = (
    st.fixed_dictionaries(
        {"email": ADDRESSES},
        optional={
            "displayName": NASTY_TEXT | JSON_SCALAR,
            "responseStatus": st.sampled_from(
                ["accepted", "declined", "tentative", "needsAction", "maybe"]
            )
            | JSON_SCALAR,
            "organizer": JSON_SCALAR,
            "optional": JSON_SCALAR,
            "self": JSON_SCALAR,
            "resource": JSON_SCALAR,
        },
    )
    | st.fixed_dictionaries({}, optional={"email": JSON_ANY, "displayName": JSON_ANY})
    | JSON_ANY
)
ATTENDEES = (
    st.lists(ATTENDEE, max_size=6)
    | st.integers(0, 500).map(lambda n: [{"email": f"p{i}@example.com"} for i in range(n)])
    | JSON_SCALAR
    | st.dictionaries(st.text(max_size=5), JSON_ANY, max_size=3)
)
DESCRIPTION = (
    BODY_TEXT | HTML | st.integers(10_000, 500_000).map(lambda n: "<p>" + "w " * n) | JSON_SCALAR
)


@st.composite
def calendar_events(draw: st.DrawFn, event_id: str, calendar_id: str) -> dict:
    """An events resource as the Calendar sync stores it (with our _calendarId), or one broken."""
    event: dict = {
        "kind": "calendar#event",
        "id": event_id,
        "status": draw(st.sampled_from(["confirmed", "tentative", "cancelled"]) | JSON_SCALAR),
        "summary": draw(
            NASTY_TEXT | JSON_SCALAR | st.integers(1_000, 100_000).map(lambda n: "S" * n)
        ),
        "description": draw(DESCRIPTION),
        "location": draw(NASTY_TEXT | JSON_SCALAR),
        "start": draw(EVENT_TIME),
        "end": draw(EVENT_TIME),
        "organizer": draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "email": ADDRESSES | JSON_SCALAR,
                    "displayName": JSON_ANY,
                    "self": JSON_SCALAR,
                },
            )
            | JSON_ANY
        ),
        "attendees": draw(ATTENDEES),
        "recurrence": draw(
            st.lists(st.sampled_from(["RRULE:FREQ=DAILY", "EXDATE:x"]) | JSON_SCALAR, max_size=3)
            | JSON_ANY
        ),
        "recurringEventId": draw(st.text(max_size=20) | JSON_SCALAR | st.just("r" * 400)),
        "originalStartTime": draw(EVENT_TIME),
        "hangoutLink": draw(st.sampled_from(["https://meet.google.com/abc", ""]) | JSON_SCALAR),
        "conferenceData": draw(
            st.fixed_dictionaries(
                {
                    "entryPoints": st.lists(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "entryPointType": st.sampled_from(["video", "phone"]) | JSON_SCALAR,
                                "uri": JSON_SCALAR,
                            },
                        )
                        | JSON_ANY,
                        max_size=3,
                    )
                    | JSON_ANY
                }
            )
            | JSON_ANY
        ),
        "iCalUID": draw(st.text(max_size=20) | JSON_SCALAR),
        "updated": draw(st.just("2026-03-01T00:00:00.000Z") | JSON_SCALAR),
        "_calendarId": calendar_id,
    }
    if draw(st.booleans()):
        event["_calendarTimeZone"] = draw(ZONES)
    for key in draw(
        st.lists(st.sampled_from([k for k in event if k not in ("id", "_calendarId")]), max_size=8)
    ):
        event.pop(key, None)
    if draw(st.integers(0, 9)) == 0:
        event["id"] = draw(JSON_SCALAR)
    json.dumps(event)
    return event


# --- RFC 822 bytes (what an mbox import hands the converter) -----------------------------------

TRANSFER_ENCODINGS = st.sampled_from(
    ["base64", "quoted-printable", "7bit", "8bit", "binary", "x-uuencode", "BASE64", "garbage", ""]
)
RAW_HEADER_VALUE = st.one_of(
    st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogateescape")),
    st.binary(max_size=30).filter(lambda b: b"\n" not in b and b"\r" not in b),
    ENCODED_WORDS.map(lambda w: w.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"\xff\xfe bad 8-bit", b"=?utf-8?B?w7Zsw6Q=?=", b"caf\xc3\xa9", b"folded\r\n  line",
            b"(comment (nested)) a@b.c", b"", b" ", b"\x00",
        ]
    ),
)  # fmt: skip
FILENAMES = st.sampled_from(
    [
        b'filename="report.pdf"', b"filename*=utf-8''%E2%82%AC%20rates.txt", b"filename*=x''%ZZ",
        b'filename="=?utf-8?B?w7Zsw6Q=?=.txt"', b"filename=", b'filename*0="a"; filename*1="b"',
        b"filename*=''", b'name="x.bin"',
    ]
)  # fmt: skip


def _header_line(name: bytes, value: bytes) -> bytes:
    return name + b": " + value.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


def _transfer(data: bytes, encoding: str, corrupt: bool) -> bytes:
    if encoding.lower() == "base64":
        text = base64.encodebytes(data)
        return text[: len(text) // 2] + b"!!**" + text[len(text) // 2 :] if corrupt else text
    if encoding == "quoted-printable":
        import quopri

        text = quopri.encodestring(data)
        return text + b"=Z" if corrupt else text
    return data


@st.composite
def mime_leaf(draw: st.DrawFn) -> bytes:
    mime = draw(MIME_TYPES_LEAF.filter(lambda m: m != "message/rfc822"))
    charset = (
        draw(CHARSETS).encode("utf-8", "surrogatepass").replace(b"\r", b"").replace(b"\n", b"")
    )
    encoding = draw(TRANSFER_ENCODINGS)
    lines = _header_line(b"Content-Type", mime.encode() + b"; charset=" + charset)
    if encoding:
        lines += _header_line(b"Content-Transfer-Encoding", encoding.encode())
    if draw(st.integers(0, 3)) == 0:
        lines += _header_line(b"Content-Disposition", b"attachment; " + draw(FILENAMES))
    text = draw(BODY_TEXT)
    try:
        data = text.encode(charset.decode("utf-8", "replace").strip().strip('"'))
    except (LookupError, ValueError, TypeError):
        data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 4)) == 0:
        data = draw(st.binary(max_size=300))
    return lines + b"\r\n" + _transfer(data, encoding, draw(st.integers(0, 4)) == 0)


def _multipart_bytes(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        boundary = draw(st.sampled_from([b"b1", b"=_part_", b"x" * 70, b"a b", b"--", b"\xff"]))
        parts = draw(st.lists(children, max_size=4))
        kind = draw(MIME_TYPES_MULTI).encode()
        declared = b"" if draw(st.integers(0, 9)) == 0 else b'; boundary="' + boundary + b'"'
        out = _header_line(b"Content-Type", kind + declared) + b"\r\n"
        out += draw(st.sampled_from([b"", b"This is a MIME message.\r\n"]))
        for part in parts:
            out += b"--" + boundary + b"\r\n" + part + b"\r\n"
        if draw(st.integers(0, 5)):  # sometimes the closing boundary never comes
            out += b"--" + boundary + b"--\r\n"
        return out

    return build()


def _forwarded(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return children.map(
        lambda inner: (
            _header_line(b"Content-Type", b"message/rfc822")
            + b"\r\n"
            + _header_line(b"Subject", b"fwd")
            + inner
        )
    )


MIME_BODY = st.recursive(mime_leaf(), lambda c: _multipart_bytes(c) | _forwarded(c), max_leaves=10)


@st.composite
def deep_mime(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([30, 80, 250, 600]))
    head = b"".join(
        _header_line(b"Content-Type", b"multipart/mixed; boundary=d%d" % i) + b"\r\n--d%d\r\n" % i
        for i in range(depth)
    )
    tail = b"".join(b"\r\n--d%d--\r\n" % i for i in reversed(range(depth)))
    return head + b"Content-Type: text/plain\r\n\r\ndeep down\r\n" + tail


RAW_TOP_HEADERS = st.lists(
    st.tuples(
        HEADER_NAMES.filter(lambda n: not n.startswith("Content")).map(str.encode),
        RAW_HEADER_VALUE
        | st.builds(str.encode, DATES)
        | ADDRESSES.map(lambda a: a.encode("utf-8", "surrogatepass")),
    ),
    max_size=10,
).map(lambda pairs: b"".join(_header_line(n, v) for n, v in pairs))
HUGE_RAW_HEADERS = st.one_of(
    st.integers(100, 3000).map(
        lambda n: b"".join(
            b"Received: from h%d by h%d; Tue, 3 Mar 2026 10:00:00 +0000\r\n" % (i, i)
            for i in range(n)
        )
    ),
    st.integers(10_000, 100_000).map(
        lambda n: _header_line(b"Subject", b"W\xc3\xb6rd " * (n // 6))
    ),
    st.integers(1_000, 50_000).map(lambda n: _header_line(b"To", b"a@b.c, " * (n // 7))),
)


@st.composite
def rfc822_messages(draw: st.DrawFn, index: int) -> bytes:
    """One mail message's bytes: a From header first (what makes it mail), then anything."""
    top = _header_line(b"From", draw(ADDRESSES).encode("utf-8", "surrogatepass"))
    top += _header_line(b"Message-ID", b"<m%d@fuzz.example>" % index)
    top += draw(RAW_TOP_HEADERS)
    if draw(st.integers(0, 5)) == 0:
        top += draw(HUGE_RAW_HEADERS)
    if draw(st.booleans()):
        top += b"MIME-Version: 1.0\r\n"
    body = draw(deep_mime()) if draw(st.integers(0, 9)) == 0 else draw(MIME_BODY)
    if body.startswith(b"Content-Type:"):
        return top + body  # the body's own headers continue the message's
    return top + b"\r\n" + body
