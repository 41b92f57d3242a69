"""Item 23: several accounts in one emulator, tokens bound to their account, login_hint."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httplib2
import pytest
import requests
from google.oauth2.credentials import Credentials
from googleapiclient.errors import HttpError

from google_emulator.client import build_service
from google_emulator.generator import generate_mailbox
from google_emulator.server import GoogleEmulator
from tests.fixtures.emulator import NOW, OWNER

SAM = "sam.rivera@pipeline.example"
REDIRECT = "http://localhost:8000/oauth/callback"
SCOPES = (
    "https://www.googleapis.com/auth/gmail.readonly "
    "https://www.googleapis.com/auth/calendar.readonly"
)


@pytest.fixture
def two_accounts(emulator: GoogleEmulator) -> GoogleEmulator:
    """OWNER's generated mailbox (300 messages) and SAM's own (25 messages, other calendars)."""
    emulator.add_mailbox(SAM, generate_mailbox(SAM, messages=25, events=6, seed=3, now=NOW))
    return emulator


def services_for(emulator: GoogleEmulator, refresh_token: str):
    credentials = Credentials(
        token=None,
        refresh_token=refresh_token,
        token_uri=emulator.url + "token",
        client_id="client-id",
        client_secret="client-secret",
    )
    gmail = build_service("gmail", "v1", emulator.url, credentials=credentials, timeout=5)
    calendar = build_service("calendar", "v3", emulator.url, credentials=credentials, timeout=5)
    return gmail, calendar


def consent(emulator: GoogleEmulator, **extra: str) -> requests.Response:
    params = {
        "client_id": "client-id",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": SCOPES,
        "access_type": "offline",
        **extra,
    }
    return requests.get(
        emulator.url + "o/oauth2/auth", params=params, allow_redirects=False, timeout=5
    )


def exchange(emulator: GoogleEmulator, reply: requests.Response) -> str:
    code = parse_qs(urlsplit(reply.headers["Location"]).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "client-id",
        "client_secret": "s",
        "redirect_uri": REDIRECT,
    }
    return requests.post(emulator.url + "token", data=form, timeout=5).json()["refresh_token"]


def test_item23_each_account_reads_its_own_mailbox_and_calendars(two_accounts):
    alex_gmail, alex_calendar = services_for(two_accounts, two_accounts.register_account(OWNER))
    sam_gmail, sam_calendar = services_for(two_accounts, two_accounts.register_account(SAM))

    alex = alex_gmail.users().getProfile(userId="me").execute()
    sam = sam_gmail.users().getProfile(userId="me").execute()
    alex_calendars = {c["id"] for c in alex_calendar.calendarList().list().execute()["items"]}
    sam_calendars = {c["id"] for c in sam_calendar.calendarList().list().execute()["items"]}

    assert (alex["emailAddress"], alex["messagesTotal"]) == (OWNER, 300)
    assert (sam["emailAddress"], sam["messagesTotal"]) == (SAM, 25)
    assert OWNER in alex_calendars and OWNER not in sam_calendars
    assert SAM in sam_calendars and SAM not in alex_calendars
    sam_page = sam_gmail.users().messages().list(userId="me").execute()
    sam_ids = {m["id"] for m in sam_page["messages"]}
    alex_ids = {
        m["id"]
        for m in alex_gmail.users()
        .messages()
        .list(userId="me", maxResults=500)
        .execute()["messages"]
    }
    assert not sam_ids & alex_ids


def test_item23_a_token_never_reads_another_accounts_data(two_accounts):
    alex_gmail, alex_calendar = services_for(two_accounts, two_accounts.register_account(OWNER))
    sam_gmail, _ = services_for(two_accounts, two_accounts.register_account(SAM))
    sam_message = sam_gmail.users().messages().list(userId="me").execute()["messages"][0]["id"]

    with pytest.raises(HttpError) as by_address:
        alex_gmail.users().getProfile(userId=SAM).execute()
    with pytest.raises(HttpError) as by_id:
        alex_gmail.users().messages().get(userId="me", id=sam_message).execute()
    with pytest.raises(HttpError) as calendar:
        alex_calendar.events().list(calendarId=SAM).execute()

    assert by_address.value.status_code == 403
    assert by_id.value.status_code == 404
    assert calendar.value.status_code == 404


def test_item23_lax_mode_spares_real_tokens_but_never_picks_an_account(emulator):
    def profile_status(token: str) -> int:
        return (
            httplib2.Http(timeout=5)
            .request(
                emulator.url + "gmail/v1/users/me/profile",
                headers={"Authorization": f"Bearer {token}"},
            )[0]
            .status
        )

    assert not emulator.require_token
    assert profile_status("made-up") == 200  # one account served: the token is for it
    emulator.add_mailbox(SAM)
    assert profile_status("made-up") == 401  # two: a made-up token belongs to neither


def test_item23_consent_signs_in_the_account_login_hint_names(two_accounts):
    sam_token = exchange(two_accounts, consent(two_accounts, login_hint=SAM))
    default_token = exchange(two_accounts, consent(two_accounts))
    sam_gmail, _ = services_for(two_accounts, sam_token)
    default_gmail, _ = services_for(two_accounts, default_token)

    assert sam_gmail.users().getProfile(userId="me").execute()["emailAddress"] == SAM
    assert default_gmail.users().getProfile(userId="me").execute()["emailAddress"] == OWNER


def test_item23_a_login_hint_naming_no_account_is_refused_not_swapped(two_accounts):
    reply = consent(two_accounts, login_hint="nobody@pipeline.example")

    assert reply.status_code == 400
    assert "no account nobody@pipeline.example" in reply.text
    assert "Location" not in reply.headers
