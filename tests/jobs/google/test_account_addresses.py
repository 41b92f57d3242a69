"""google_account_refresh_addresses: the send-as list read from Gmail (the emulator), stored."""

from __future__ import annotations

import uuid

import pytest

from google_emulator.server import GoogleEmulator
from jobs.google.accounts import google_account_refresh_addresses
from jobs.google.client import gmail_service
from jobs.models import GoogleAccount, Interaction
from jobs.normalization.services import raw_events_normalize
from jobs.sync.convert import gmail_message_from_rfc822
from jobs.sync.gmail import message_item
from jobs.sync.raw_events import raw_events_upsert
from tests.fixtures.emulator import ALIAS, OWNER

pytestmark = pytest.mark.django_db

LATER_ALIAS = "ada.later@alias.example"


def test_item16_an_alias_added_after_connecting_is_stored_at_the_next_refresh(
    google_account: GoogleAccount, emulator: GoogleEmulator
):
    assert google_account.addresses == [OWNER, ALIAS]
    emulator.mailbox(OWNER).aliases = (ALIAS, LATER_ALIAS.upper())

    addresses = google_account_refresh_addresses(google_account)

    assert addresses == [OWNER, ALIAS, LATER_ALIAS]
    google_account.refresh_from_db()
    assert google_account.addresses == [OWNER, ALIAS, LATER_ALIAS]
    assert LATER_ALIAS in google_account.own_addresses


def test_item16_the_refresh_reuses_a_given_service_and_drops_removed_aliases(
    google_account: GoogleAccount, emulator: GoogleEmulator
):
    emulator.mailbox(OWNER).aliases = ()
    service = gmail_service(google_account)

    assert google_account_refresh_addresses(google_account, service=service) == [OWNER]
    google_account.refresh_from_db()
    assert google_account.addresses == [OWNER]


def test_item16_unlabelled_mail_from_the_refreshed_alias_is_outbound(
    google_account: GoogleAccount, emulator: GoogleEmulator, user
):
    raw = b"From: Ada <" + LATER_ALIAS.encode() + b">\nTo: jo@client.example\nSubject: hi\n\nx\n"
    message = gmail_message_from_rfc822(raw, label_ids=[], internal_date_ms=1)
    emulator.mailbox(OWNER).aliases = (ALIAS, LATER_ALIAS)
    google_account_refresh_addresses(google_account)
    raw_events_upsert(
        user_id=user.pk,
        account_id=google_account.pk,
        provider="gmail",
        batch_id=uuid.uuid4(),
        items=[message_item(message)],
    )

    raw_events_normalize(user_id=user.pk, provider="gmail")

    assert Interaction.objects.get(user=user).direction == "outbound"
