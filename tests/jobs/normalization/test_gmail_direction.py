"""Direction of Gmail messages: the SENT / DRAFT labels where there are labels, else the own
address and send-as aliases."""

from __future__ import annotations

from datetime import UTC, datetime

from jobs.normalization.gmail import parse_gmail_message
from jobs.sync.convert import gmail_message_from_rfc822

FETCHED_AT = datetime(2026, 3, 10, tzinfo=UTC)
ACCOUNT = frozenset({"ada@example.com", "Sales@Example.IO", "ada@legacy-domain.org"})


def direction(sender: str | None, *, labels: list[str], own: frozenset[str] = ACCOUNT) -> str:
    headers = b"To: someone@example.net\r\nSubject: s\r\n"
    if sender is not None:
        headers = b"From: " + sender.encode() + b"\r\n" + headers
    full = gmail_message_from_rfc822(headers + b"\r\nbody", label_ids=labels)
    interaction = parse_gmail_message(full, own_addresses=own, fetched_at=FETCHED_AT)
    assert interaction.kind == f"email_{interaction.direction}"
    return interaction.direction


def test_mail_from_the_account_address_is_outbound() -> None:
    assert direction("Ada <ada@example.com>", labels=[]) == "outbound"
    assert direction("Ada <ada@example.com>", labels=["SENT"]) == "outbound"


def test_item16_the_sent_label_decides_over_an_unknown_alias() -> None:
    # sent from an alias added after the account's addresses were read
    assert direction("Ada New <ada@new-alias.example>", labels=["SENT"]) == "outbound"
    assert direction("Ada New <ada@new-alias.example>", labels=["DRAFT"]) == "outbound"


def test_item16_labels_decide_where_present_the_from_address_only_without_labels() -> None:
    # Gmail labels every message it sent SENT; one that is not was not sent from this mailbox
    assert direction("Ada <ada@example.com>", labels=["INBOX", "UNREAD"]) == "inbound"
    assert direction("Ada <ada@example.com>", labels=[]) == "outbound"
    assert direction("Bob <bob@example.net>", labels=[]) == "inbound"


def test_mail_from_a_send_as_alias_is_outbound_case_insensitively() -> None:
    assert direction("Ada Sales <sales@example.io>", labels=[]) == "outbound"
    assert direction("ADA@LEGACY-DOMAIN.ORG", labels=[]) == "outbound"


def test_mail_from_someone_else_is_inbound() -> None:
    assert direction("Bob <bob@example.net>", labels=["INBOX"]) == "inbound"


def test_the_sent_label_decides_when_no_own_addresses_are_known() -> None:
    assert direction("Bob <bob@example.net>", labels=["SENT"], own=frozenset()) == "outbound"
    assert direction("Bob <bob@example.net>", labels=["INBOX"], own=frozenset()) == "inbound"


def test_the_sent_label_decides_when_from_is_missing() -> None:
    assert direction(None, labels=["SENT"]) == "outbound"
    assert direction(None, labels=["INBOX"]) == "inbound"


def test_an_unparseable_from_falls_back_to_the_sent_label() -> None:
    assert direction("not an address", labels=["SENT"]) == "outbound"
