"""OAuth against the emulator with google-auth's and google-auth-oauthlib's real code paths."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httplib2
import pytest
import requests
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

from google_emulator.client import build_service, discovery_document
from google_emulator.server import GoogleEmulator

OWNER = "alex.morgan@pipeline.example"
REDIRECT = "http://localhost:8000/oauth/callback"
SCOPES = [
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/calendar.readonly",
]


@pytest.fixture
def strict(emulator: GoogleEmulator) -> GoogleEmulator:
    """The emulator, now accepting only the access tokens it issued."""
    emulator.require_token = True
    return emulator


def credentials_for(emulator: GoogleEmulator, refresh_token: str) -> Credentials:
    return Credentials(
        token=None,
        refresh_token=refresh_token,
        token_uri=emulator.url + "token",
        client_id="client-id",
        client_secret="client-secret",
    )


def connect(emulator: GoogleEmulator, monkeypatch, **auth_kwargs) -> Flow:
    """Run the web connect flow: consent URL, redirect back with a code, code exchange."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the emulator speaks plain HTTP
    flow = Flow.from_client_config(
        {
            "web": {
                "client_id": "client-id",
                "client_secret": "client-secret",
                "auth_uri": emulator.url + "o/oauth2/auth",
                "token_uri": emulator.url + "token",
                "redirect_uris": [REDIRECT],
            }
        },
        scopes=SCOPES,
        redirect_uri=REDIRECT,
    )
    auth_url, _ = flow.authorization_url(**auth_kwargs)
    consent = requests.get(auth_url, allow_redirects=False, timeout=5)
    assert consent.status_code == 302
    flow.fetch_token(authorization_response=consent.headers["Location"])
    return flow


def test_consent_redirects_back_with_a_code_and_the_state(emulator):
    reply = requests.get(
        emulator.url + "o/oauth2/auth",
        params={
            "client_id": "client-id",
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": " ".join(SCOPES),
            "state": "xyz",
            "access_type": "offline",
        },
        allow_redirects=False,
        timeout=5,
    )

    location = urlsplit(reply.headers["Location"])
    answer = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    assert answer["state"] == ["xyz"] and answer["code"][0].startswith("4/")


def test_the_connect_flow_exchanges_a_code_and_google_auth_refreshes_it(strict, monkeypatch):
    flow = connect(strict, monkeypatch, access_type="offline", prompt="consent")
    credentials = flow.credentials
    first_token = credentials.token

    credentials.refresh(Request())

    assert credentials.refresh_token and credentials.token != first_token
    assert credentials.expiry is not None and set(credentials.granted_scopes or SCOPES) == set(
        SCOPES
    )
    gmail = build_service("gmail", "v1", strict.url, credentials=credentials)
    assert gmail.users().getProfile(userId="me").execute()["emailAddress"] == OWNER


def test_without_offline_access_no_refresh_token_is_issued(emulator, monkeypatch):
    flow = connect(emulator, monkeypatch, access_type="online")  # the library defaults to offline

    assert flow.credentials.token and flow.credentials.refresh_token is None


def test_a_code_works_once(emulator):
    code = emulator.issue_code(OWNER)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "c",
        "client_secret": "s",
    }

    first = requests.post(emulator.url + "token", data=form, timeout=5)
    again = requests.post(emulator.url + "token", data=form, timeout=5)

    assert first.status_code == 200
    assert first.json()["token_type"] == "Bearer" and first.json()["refresh_token"]
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_refreshing_a_revoked_token_raises_refresh_error(emulator):
    refresh_token = emulator.register_account(OWNER)
    credentials = credentials_for(emulator, refresh_token)
    credentials.refresh(Request())

    assert requests.post(emulator.url + "revoke", params={"token": refresh_token}, timeout=5).ok
    with pytest.raises(RefreshError) as error:
        credentials.refresh(Request())

    assert "invalid_grant" in str(error.value)
    assert "Token has been expired or revoked." in str(error.value)


def test_an_unknown_refresh_token_is_invalid_grant(emulator):
    with pytest.raises(RefreshError, match="invalid_grant"):
        credentials_for(emulator, "1//never-issued").refresh(Request())


def test_the_token_endpoint_answers_invalid_grant_while_the_fault_lasts(emulator):
    credentials = credentials_for(emulator, emulator.register_account(OWNER))
    emulator.faults.add("oauth.token", "invalid_grant", times=1)

    with pytest.raises(RefreshError, match="invalid_grant"):
        credentials.refresh(Request())
    credentials.refresh(Request())

    assert credentials.valid


def test_require_token_answers_401_to_tokens_it_did_not_issue(strict):
    status, body = httplib2.Http(timeout=5).request(
        strict.url + "gmail/v1/users/me/profile", headers={"Authorization": "Bearer made-up"}
    )
    anonymous = build_from_document(
        discovery_document("gmail", "v1", strict.url), http=httplib2.Http(timeout=5)
    )

    assert status.status == 401 and b"UNAUTHENTICATED" in body
    assert status["www-authenticate"].startswith("Bearer")
    with pytest.raises(HttpError) as error:
        anonymous.users().getProfile(userId="me").execute()
    assert error.value.status_code == 401


def test_the_client_refreshes_expired_access_tokens_and_carries_on(strict):
    gmail = build_service(
        "gmail",
        "v1",
        strict.url,
        credentials=credentials_for(strict, strict.register_account(OWNER)),
    )
    gmail.users().getProfile(userId="me").execute()
    strict.log.reset()

    strict.expire_access_tokens()
    profile = gmail.users().getProfile(userId="me").execute()

    assert profile["emailAddress"] == OWNER
    assert [entry.route for entry in strict.log] == [
        "gmail.users.getProfile",
        "oauth.token",
        "gmail.users.getProfile",
    ]
    assert [entry.status for entry in strict.log] == [401, 200, 200]


def test_batch_parts_answered_401_are_resent_after_a_refresh(strict):
    gmail = build_service(
        "gmail",
        "v1",
        strict.url,
        credentials=credentials_for(strict, strict.register_account(OWNER)),
    )
    ids = [
        m["id"]
        for m in gmail.users().messages().list(userId="me", maxResults=5).execute()["messages"]
    ]
    strict.expire_access_tokens()
    strict.log.reset()
    got = []

    batch = gmail.new_batch_http_request(
        callback=lambda _, response, error: got.append((response, error))
    )
    for message_id in ids:
        batch.add(gmail.users().messages().get(userId="me", id=message_id, format="minimal"))
    batch.execute()

    assert [error for _, error in got] == [None] * 5
    assert [e.route for e in strict.log if not e.in_batch] == ["batch", "oauth.token", "batch"]
    assert [e.status for e in strict.log if e.in_batch] == [401] * 5 + [200] * 5


def test_a_token_acts_for_its_own_account_only(strict):
    strict.add_mailbox("sam@pipeline.example")
    sam = build_service(
        "gmail",
        "v1",
        strict.url,
        credentials=credentials_for(strict, strict.register_account("sam@pipeline.example")),
    )

    assert sam.users().getProfile(userId="me").execute()["emailAddress"] == "sam@pipeline.example"
    with pytest.raises(HttpError) as error:
        sam.users().getProfile(userId=OWNER).execute()
    assert error.value.status_code == 403


def test_a_token_without_the_calendar_scope_is_403_on_calendar(strict):
    gmail_only = strict.accounts.register(
        OWNER, scope="https://www.googleapis.com/auth/gmail.readonly"
    )
    calendar = build_service(
        "calendar", "v3", strict.url, credentials=credentials_for(strict, gmail_only)
    )

    with pytest.raises(HttpError) as error:
        calendar.calendarList().list().execute()

    assert error.value.status_code == 403
    assert error.value.error_details[0]["reason"] == "insufficientPermissions"
