"""Item 18 (emulator): Google's quotas over a sliding window, per-part pricing and latency."""

from __future__ import annotations

import json
import time

import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.errors import HttpError

from google_emulator.client import build_service
from google_emulator.quota import QuotaLimits, QuotaMeter
from google_emulator.server import GoogleEmulator
from tests.fixtures.emulator import OWNER

SAM = "sam@pipeline.example"


def limit(emulator: GoogleEmulator, **limits: float) -> None:
    emulator.quota = QuotaMeter(QuotaLimits(**limits))


def service_for(emulator: GoogleEmulator, email: str, api: str = "gmail", version: str = "v1"):
    credentials = Credentials(
        token=None,
        refresh_token=emulator.register_account(email),
        token_uri=emulator.url + "token",
        client_id="client-id",
        client_secret="client-secret",
    )
    return build_service(api, version, emulator.url, credentials=credentials, timeout=10)


def message_ids(gmail, count: int) -> list[str]:
    page = gmail.users().messages().list(userId="me", maxResults=count).execute()
    return [ref["id"] for ref in page["messages"]]


def batch_get(gmail, ids: list[str]) -> list[tuple[object, HttpError | None]]:
    answers: list[tuple[object, HttpError | None]] = []
    batch = gmail.new_batch_http_request(callback=lambda _, r, e: answers.append((r, e)))
    for message_id in ids:
        batch.add(gmail.users().messages().get(userId="me", id=message_id, format="minimal"))
    batch.execute()
    return answers


def error_body(error: HttpError) -> dict:
    return json.loads(error.content)["error"]


def test_item18_each_part_of_a_batch_is_priced_and_the_user_limit_answers_429(emulator, gmail):
    ids = message_ids(gmail, 60)  # 5 units, before the limit is set
    limit(emulator, gmail_units_per_user=260, window_s=30)

    answers = batch_get(gmail, ids[:50])  # 250 units
    assert [error for _, error in answers] == [None] * 50
    assert emulator.quota.spent(f"gmail:user:{OWNER}") == 250
    gmail.users().getProfile(userId="me").execute()  # 1 unit: 251
    gmail.users().messages().get(userId="me", id=ids[0]).execute()  # 5 units: 256
    with pytest.raises(HttpError) as caught:
        gmail.users().messages().get(userId="me", id=ids[1]).execute()  # 261 > 260

    assert caught.value.status_code == 429
    body = error_body(caught.value)
    assert body["code"] == 429 and body["status"] == "RESOURCE_EXHAUSTED"
    assert body["errors"][0]["reason"] == "userRateLimitExceeded"
    assert body["errors"][0]["domain"] == "usageLimits"
    assert body["message"].startswith("User-rate limit exceeded.  Retry after ")
    assert emulator.quota_rejections == 1
    assert emulator.quota.spent(f"gmail:user:{OWNER}") == 256  # a refused call costs nothing


def test_item18_batch_parts_over_the_limit_fail_on_their_own(emulator, gmail):
    ids = message_ids(gmail, 20)
    limit(emulator, gmail_units_per_user=50, window_s=30)

    answers = batch_get(gmail, ids)

    statuses = [error.status_code if error else 200 for _, error in answers]
    assert statuses == [200] * 10 + [429] * 10
    assert emulator.quota_rejections == 10


def test_item18_the_project_limit_binds_across_accounts(emulator):
    emulator.add_mailbox(SAM)
    alex, sam = service_for(emulator, OWNER), service_for(emulator, SAM)
    limit(emulator, gmail_units_per_user=100, gmail_units_per_project=150, window_s=30)

    for _ in range(20):
        alex.users().getProfile(userId="me").execute()  # 1 unit each: alex at 20
    for _ in range(100):
        sam.users().getProfile(userId="me").execute()
    # sam at 100 (his own limit), project at 120
    with pytest.raises(HttpError) as user_limited:
        sam.users().getProfile(userId="me").execute()
    for _ in range(30):
        alex.users().getProfile(userId="me").execute()  # project at 150
    with pytest.raises(HttpError) as project_limited:
        alex.users().getProfile(userId="me").execute()

    assert error_body(user_limited.value)["errors"][0]["reason"] == "userRateLimitExceeded"
    assert error_body(project_limited.value)["errors"][0]["reason"] == "rateLimitExceeded"
    assert project_limited.value.status_code == 429
    assert emulator.quota.rejections == {"userRateLimitExceeded": 1, "rateLimitExceeded": 1}


def test_item18_the_window_slides_rather_than_resetting(emulator, gmail):
    limit(emulator, gmail_units_per_user=10, window_s=1.0)
    profile = gmail.users().getProfile(userId="me")
    for _ in range(5):
        profile.execute()  # 5 units at t=0
    time.sleep(0.6)
    for _ in range(5):
        profile.execute()  # 5 more at t=0.6: full
    time.sleep(0.5)
    for _ in range(5):
        profile.execute()  # t=1.1: the first five left the window, room for five
    # A fixed one-second bucket would have reset at t=1 and admit five more here.
    with pytest.raises(HttpError):
        profile.execute()
    assert emulator.quota_rejections == 1


def test_item18_calendar_counts_requests(emulator, calendar):
    limit(emulator, calendar_requests_per_user=3, gmail_units_per_user=1, window_s=30)
    for _ in range(3):
        calendar.calendarList().list().execute()
    with pytest.raises(HttpError) as caught:
        calendar.events().list(calendarId="primary").execute()
    assert caught.value.status_code == 429
    assert error_body(caught.value)["errors"][0]["reason"] == "userRateLimitExceeded"
    assert emulator.quota.spent(f"calendar:user:{OWNER}") == 3


def test_item18_quota_is_off_unless_configured(emulator, gmail):
    assert not emulator.quota.enabled
    ids = message_ids(gmail, 100)
    for _ in range(3):
        assert all(error is None for _, error in batch_get(gmail, ids[:100]))
    assert emulator.quota_rejections == 0


def test_item18_latency_applies_per_request_and_per_batch_part(emulator, gmail):
    ids = message_ids(gmail, 10)
    emulator.latency_s, emulator.part_latency_s = 0.05, 0.05

    started = time.monotonic()
    gmail.users().messages().get(userId="me", id=ids[0]).execute()
    one_get = time.monotonic() - started
    started = time.monotonic()
    batch_get(gmail, ids)
    serial_batch = time.monotonic() - started
    emulator.part_concurrency = 5
    started = time.monotonic()
    batch_get(gmail, ids)
    concurrent_batch = time.monotonic() - started

    assert 0.1 <= one_get < 0.3
    assert serial_batch >= 0.05 + 10 * 0.05
    assert 0.05 + 2 * 0.05 <= concurrent_batch < serial_batch
