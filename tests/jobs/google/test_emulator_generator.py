"""The mailbox generator: determinism, realism of the mail and events, and its speed at 20k."""

from __future__ import annotations

import email
import time
from collections import Counter
from datetime import UTC, date, datetime
from email import policy

import pytest

from google_emulator.client import build_service
from google_emulator.generator import generate_mailbox, make_message
from google_emulator.server import GoogleEmulator

OWNER = "alex.morgan@pipeline.example"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def big():
    return generate_mailbox(OWNER, messages=1000, events=80, seed=3, now=NOW)


@pytest.fixture(scope="module")
def mails(big) -> list[email.message.EmailMessage]:
    """Every generated message parsed once by the stdlib's modern parser."""
    return [parsed(message) for message in big.messages]


def parsed(message) -> email.message.EmailMessage:
    return email.message_from_bytes(message.raw, policy=policy.default)


def test_the_same_seed_and_now_give_the_same_bytes():
    first = generate_mailbox(OWNER, messages=200, seed=11, now=NOW)
    again = generate_mailbox(OWNER, messages=200, seed=11, now=NOW)
    other = generate_mailbox(OWNER, messages=200, seed=12, now=NOW)

    assert [m.raw for m in first.messages] == [m.raw for m in again.messages]
    assert first.calendars == again.calendars
    assert [m.raw for m in first.messages] != [m.raw for m in other.messages]


def test_it_makes_exactly_the_messages_asked_for_within_the_days(big):
    dates = [m.internal_date_ms for m in big.messages]

    assert len(big.messages) == 1000
    assert dates == sorted(dates)
    assert (
        NOW.timestamp() * 1000 - 60 * 86400 * 1000 <= dates[0]
        and dates[-1] <= NOW.timestamp() * 1000
    )


def test_the_people_span_companies_and_alphabets(big):
    companies = {p.company for p in big.people if p.company}
    names = " ".join(p.name for p in big.people)

    assert 50 <= len(big.people) <= 200
    assert len(companies) >= 12
    assert any(ch in names for ch in "éëøåü") and any("\u3040" <= ch <= "\u9fff" for ch in names)
    assert any(", " in p.name for p in big.people)


def test_mail_mixes_charsets_html_only_and_multipart(big, mails):
    charsets = Counter(m.charset for m in big.messages)
    html_only = sum(m.html_only for m in big.messages)
    content_types = Counter(mail.get_content_type() for mail in mails)

    for charset in ("utf-8", "iso-8859-1", "windows-1252", "iso-2022-jp"):
        assert charsets[charset] >= 15, charsets
    assert 0.05 < html_only / len(big.messages) < 0.4
    assert {"text/plain", "text/html", "multipart/alternative", "multipart/mixed"} <= set(
        content_types
    )


def test_every_message_parses_and_its_encoded_headers_decode(mails):
    for mail in mails:
        body = mail.get_body(("plain", "html"))
        assert "=?" not in str(mail["subject"]) and "=?" not in str(mail["from"])
        assert body is not None and body.get_content().strip()


def test_threads_go_both_ways_with_reply_chains(big, mails):
    sent = {m.message_id: "SENT" in m.label_ids for m in big.messages}
    replies = [
        (m, mail) for m, mail in zip(big.messages, mails, strict=True) if mail["In-Reply-To"]
    ]
    directions = Counter((sent[mail["In-Reply-To"]], "SENT" in m.label_ids) for m, mail in replies)

    assert len(replies) > 150
    assert directions[(True, False)] > 50 and directions[(False, True)] > 50
    assert max(len(mail["References"].split()) for _, mail in replies) >= 4
    assert any(mail["Cc"] for mail in mails)


def test_bulk_mail_carries_list_headers_and_categories(big, mails):
    pairs = list(zip(big.messages, mails, strict=True))
    newsletters = [(m, mail) for m, mail in pairs if m.kind == "newsletter"]
    notifications = [(m, mail) for m, mail in pairs if m.kind == "notification"]

    assert newsletters and all(mail["List-Unsubscribe"] for _, mail in newsletters)
    assert any("CATEGORY_PROMOTIONS" in m.label_ids for m, _ in newsletters)
    assert all("CATEGORY_UPDATES" in m.label_ids for m, _ in notifications)
    assert all("reply" in str(mail["From"]) for _, mail in notifications)


def test_attachments_and_the_odd_folders_are_present(big, mails):
    attachments = Counter(
        part.get_content_type() for mail in mails for part in mail.iter_attachments()
    )
    kinds = Counter(m.kind for m in big.messages)

    assert attachments["application/pdf"] > 0 and attachments["image/png"] > 0
    assert kinds["spam"] and kinds["trash"] and kinds["draft"]
    assert all(m.label_ids == ("SPAM", "UNREAD") for m in big.messages if m.kind == "spam")


def test_calendars_hold_the_documented_kinds_of_events(big):
    primary, shared = big.calendars
    events = primary.events + shared.events
    timed = [e for e in events if "dateTime" in e.get("start", {})]

    assert primary.primary and primary.id == OWNER and not shared.primary
    assert shared.id.endswith("@group.calendar.google.com")
    assert any(e.get("start", {}).get("date") for e in events)
    day_counts = [
        (date.fromisoformat(e["end"]["date"]) - date.fromisoformat(e["start"]["date"])).days
        for e in events
        if "date" in e.get("start", {})
    ]
    assert 1 in day_counts and max(day_counts) > 1
    assert any("COUNT=" in e.get("recurrence", [""])[0] for e in events)
    assert any(e["status"] == "cancelled" and "recurringEventId" not in e for e in events)
    assert any(e["status"] == "cancelled" and "recurringEventId" in e for e in events)
    assert any(e.get("hangoutLink") and e["conferenceData"]["conferenceId"] for e in events)
    assert len({e["start"]["timeZone"] for e in timed}) >= 3
    statuses = {a["responseStatus"] for e in events for a in e.get("attendees", [])}
    assert {"accepted", "declined", "tentative", "needsAction"} <= statuses


def test_make_message_crafts_a_reply_with_an_encoded_sender():
    original = make_message(
        from_="Zoë Faure <zoe@sgl.example>", to=OWNER, subject="Devis", date=NOW
    )
    reply = make_message(
        from_=f"Alex <{OWNER}>",
        to="Faure, Zoë <zoe@sgl.example>",
        subject="Re: Devis",
        body="<p>Merci</p>",
        html=True,
        in_reply_to=original.message_id,
        labels=["SENT"],
    )

    mail = email.message_from_bytes(reply.raw, policy=policy.default)
    assert (
        b"=?UTF-8?B?" in original.raw
        and str(parsed(original)["From"]) == "Zoë Faure <zoe@sgl.example>"
    )
    assert mail["In-Reply-To"] == original.message_id == mail["References"]
    assert mail.get_content_type() == "text/html" and reply.html_only
    assert reply.label_ids == ("SENT",)
    assert original.internal_date_ms == int(NOW.timestamp() * 1000)


@pytest.mark.slow
def test_twenty_thousand_messages_generate_load_and_stream_through_batches():
    started = time.perf_counter()
    generated = generate_mailbox(OWNER, messages=20_000, events=100, seed=1, now=NOW)
    generated_s = time.perf_counter() - started
    with GoogleEmulator() as emulator:
        started = time.perf_counter()
        emulator.add_mailbox(OWNER, generated)
        loaded_s = time.perf_counter() - started
        gmail = build_service("gmail", "v1", emulator.url)
        profile = gmail.users().getProfile(userId="me").execute()
        ids = [
            m["id"]
            for m in gmail.users()
            .messages()
            .list(userId="me", maxResults=500)
            .execute()["messages"]
        ]
        started = time.perf_counter()
        for offset in range(0, 500, 100):
            batch = gmail.new_batch_http_request()
            for message_id in ids[offset : offset + 100]:
                batch.add(gmail.users().messages().get(userId="me", id=message_id, format="full"))
            batch.execute()
        batch_s = time.perf_counter() - started
        served = emulator.log.count("gmail.users.messages.get", http_only=False)

    print(
        f"\n20,000 messages: generated in {generated_s:.2f} s, loaded in {loaded_s:.2f} s; "
        f"messages.get through batch: {served / batch_s:.0f}/s"
    )
    # How fast is shown, not asserted (it depends on the machine): issue 3 measured 1.45 s to
    # generate and about 4.6 s to load; a slower CI machine took 5.8 s and 17.5 s.
    assert profile["messagesTotal"] == 20_000
    assert served == 500
