"""Credentials for a GoogleAccount: refreshed through the emulator, under a row lock, revocable."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from jobs.errors import PermanentError
from jobs.google.client import execute, gmail_service
from jobs.google.credentials import get_credentials
from jobs.google.tokens import decrypt_token
from jobs.models import GoogleAccount, GoogleAccountStatus

pytestmark = pytest.mark.django_db


def refreshes(emulator) -> int:
    return emulator.log.count(route="oauth.token")


def test_the_first_use_refreshes_through_the_token_endpoint_and_stores_the_token(
    google_account, emulator
):
    credentials = get_credentials(google_account)
    assert credentials.token_uri == f"{emulator.url}token"
    assert credentials.valid and refreshes(emulator) == 1
    google_account.refresh_from_db()
    assert decrypt_token(google_account.access_token_encrypted) == credentials.token
    assert google_account.access_token_expires_at > timezone.now() + timedelta(minutes=55)


def test_a_fresh_stored_token_is_reused_without_a_refresh(google_account, emulator):
    first = get_credentials(google_account)
    second = get_credentials(google_account)
    assert second.token == first.token
    assert refreshes(emulator) == 1


def test_a_token_about_to_expire_is_refreshed_ahead_of_time(google_account, emulator):
    first = get_credentials(google_account)
    GoogleAccount.objects.filter(pk=google_account.pk).update(
        access_token_expires_at=timezone.now() + timedelta(minutes=4)
    )
    second = get_credentials(google_account)
    assert second.token != first.token
    assert refreshes(emulator) == 2


def test_a_token_google_rejects_is_refreshed_once_and_the_call_succeeds(google_account, emulator):
    gmail = gmail_service(google_account)
    emulator.expire_access_tokens()
    profile = execute(gmail.users().getProfile(userId="me"), account=google_account)
    assert profile["emailAddress"] == google_account.email
    assert refreshes(emulator) == 2
    assert emulator.log.count(route="gmail.users.getProfile") == 2  # 401, then 200


def test_invalid_grant_marks_the_account_for_reauth_without_leaking_the_token(
    google_account, emulator
):
    refresh_token = decrypt_token(google_account.refresh_token_encrypted)
    emulator.revoke(refresh_token)
    with pytest.raises(PermanentError, match="invalid_grant") as caught:
        get_credentials(google_account)
    google_account.refresh_from_db()
    assert google_account.status == GoogleAccountStatus.NEEDS_REAUTH
    assert "reconnect" in google_account.last_error
    assert refresh_token not in google_account.last_error
    assert refresh_token not in str(caught.value)


def test_an_account_needing_reauth_is_not_refreshed_again(google_account, emulator):
    GoogleAccount.objects.filter(pk=google_account.pk).update(
        status=GoogleAccountStatus.NEEDS_REAUTH
    )
    with pytest.raises(PermanentError, match="needs_reauth"):
        get_credentials(google_account)
    assert refreshes(emulator) == 0


@pytest.mark.django_db(transaction=True)
def test_two_workers_refreshing_at_once_make_one_refresh_request(google_account, emulator):
    # The token endpoint is slow, so the second worker arrives while the first holds the lock.
    emulator.faults.add_delay("oauth.token", 0.3)
    tokens: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker() -> None:
        try:
            start.wait()
            tokens.append(get_credentials(google_account).token)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    assert refreshes(emulator) == 1


def test_tokens_never_reach_the_logs(google_account, emulator, caplog):
    caplog.set_level(logging.DEBUG)
    refresh_token = decrypt_token(google_account.refresh_token_encrypted)
    gmail = gmail_service(google_account)
    emulator.expire_access_tokens()
    execute(gmail.users().getProfile(userId="me"), account=google_account)
    google_account.refresh_from_db()
    access_token = decrypt_token(google_account.access_token_encrypted)
    emulator.revoke(refresh_token)
    emulator.expire_access_tokens()
    with pytest.raises(PermanentError):
        execute(gmail.users().getProfile(userId="me"), account=google_account)
    assert caplog.records  # the refresh and the failure were logged
    for secret in (refresh_token, access_token):
        assert secret not in caplog.text
