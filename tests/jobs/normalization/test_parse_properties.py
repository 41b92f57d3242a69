"""Property tests: arbitrary header soup and resource shapes never crash convert or the parsers."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.normalization.calendar import parse_calendar_event
from jobs.normalization.gmail import parse_gmail_message
from jobs.normalization.types import NormalizationError, ParsedInteraction
from jobs.sync.convert import format_message, gmail_message_from_rfc822

FETCHED_AT = datetime(2026, 3, 10, tzinfo=UTC)
OWN = frozenset({"ada@example.com"})
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEADER_NAMES = st.sampled_from(
    [
        "From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To",
        "References", "Received", "Content-Type", "Content-Transfer-Encoding",
        "Content-Disposition", "MIME-Version", "X-Gmail-Labels", "X-GM-THRID",
    ]
) | st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z")  # fmt: skip
FRAGMENTS = st.sampled_from(
    [
        '"Doe, John" <j@x.org>', "=?utf-8?B?w7Zsw6Q=?=", "=?utf-8?Q?caf=C3=A9?=", "=?bad?Q?x",
        "=?iso-2022-jp?B?GyRCJDMbKEI=?=", "<a@b>", "a@xn--mnchen-3ya.de", "\\", '"', "(", ")",
        ";", ":", ",", "<", ">", "@", "multipart/mixed; boundary=b", "text/plain; charset=",
        "base64", "quoted-printable", "attachment; filename=", "Tue, 3 Mar 2026 10:00:00 +0000",
        "\r\n ", "\r\n", "\n", "\x00", "é", "日本", "\ud800", "0" * 30, "--b", "--b--",
    ]
)  # fmt: skip
VALUE = st.lists(FRAGMENTS | st.text(max_size=12), max_size=6).map("".join)
VALUE_BYTES = VALUE.map(lambda v: v.encode("utf-8", "surrogatepass")) | st.binary(max_size=40)
BODY = st.lists(
    st.binary(max_size=60)
    | st.sampled_from([b"--b\r\n", b"--b--\r\n", b"Content-Type: text/html\r\n\r\n", b"\r\n"])
    | VALUE_BYTES,
    max_size=8,
).map(b"".join)


@st.composite
def raw_messages(draw: st.DrawFn) -> bytes:
    headers = draw(st.lists(st.tuples(HEADER_NAMES, VALUE_BYTES), max_size=12))
    lines = b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers)
    return lines + b"\r\n" + draw(BODY)


def parse(full: dict) -> ParsedInteraction | None:
    try:
        return parse_gmail_message(full, own_addresses=OWN, fetched_at=FETCHED_AT)
    except NormalizationError:
        return None


@SETTINGS
@given(raw_messages())
def test_header_soup_never_crashes_and_parses_deterministically(raw: bytes) -> None:
    full = gmail_message_from_rfc822(raw)
    json.dumps(full)
    for fmt in ("metadata", "minimal", "raw"):
        format_message(full, raw, fmt)
    # without any date in the message, internalDate is the conversion time
    assert gmail_message_from_rfc822(raw, internal_date_ms=1) == gmail_message_from_rfc822(
        raw, internal_date_ms=1
    )
    first = parse(full)
    assert first == parse(full)
    if first is not None:
        text = json.dumps(first.metadata)
        assert "\\u0000" not in text
        assert "\x00" not in first.body_text + first.subject
        first.body_text.encode("utf-8")
        first.subject.encode("utf-8")
        assert first.occurred_at.tzinfo is not None


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
PART_KEYS = st.sampled_from(["partId", "mimeType", "filename", "headers", "body", "parts", "data"])


@st.composite
def gmail_shapes(draw: st.DrawFn) -> dict:
    keys = ["id", "threadId", "labelIds", "snippet", "internalDate", "payload"]
    message = {key: draw(JSONISH) for key in draw(st.lists(st.sampled_from(keys), unique=True))}
    if draw(st.booleans()):
        message["id"] = "abc"
        message["payload"] = {key: draw(JSONISH) for key in draw(st.lists(PART_KEYS, unique=True))}
    return message


@SETTINGS
@given(gmail_shapes())
def test_odd_gmail_resource_shapes_only_raise_normalization_error(message: dict) -> None:
    with contextlib.suppress(NormalizationError):
        parse_gmail_message(message, own_addresses=OWN, fetched_at=FETCHED_AT)


EVENT_KEYS = st.sampled_from(
    [
        "id", "status", "summary", "description", "start", "end", "originalStartTime",
        "recurringEventId", "attendees", "organizer", "hangoutLink", "conferenceData",
        "recurrence", "location",
    ]
)  # fmt: skip
EVENT_TIME = st.fixed_dictionaries(
    {},
    optional={
        "date": st.dates().map(str) | st.text(max_size=10),
        "dateTime": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
        | st.text(max_size=10),
        "timeZone": st.sampled_from(["UTC", "America/Los_Angeles", "Nope/Nope", ""]),
    },
)


@SETTINGS
@given(
    st.dictionaries(EVENT_KEYS, JSONISH | EVENT_TIME, max_size=8),
    st.sampled_from(["UTC", "Asia/Kolkata", "bogus"]),
)
def test_odd_calendar_events_only_raise_normalization_error(event: dict, zone: str) -> None:
    try:
        first = parse_calendar_event(
            event, calendar_id="c", own_addresses=OWN, fetched_at=FETCHED_AT, default_tz=zone
        )
    except NormalizationError:
        return
    json.dumps(first.metadata)
    assert first.occurred_at.utcoffset().total_seconds() == 0
    assert first == parse_calendar_event(
        event, calendar_id="c", own_addresses=OWN, fetched_at=FETCHED_AT, default_tz=zone
    )
