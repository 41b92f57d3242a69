"""OAuth consent through the emulator, disconnecting, and the admin's token hygiene."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import httplib2
import pytest
from django.urls import reverse

from google_emulator.errors import OAuthError
from jobs.google.credentials import get_credentials
from jobs.google.oauth import SCOPES
from jobs.google.tokens import decrypt_token
from jobs.models import GoogleAccount, GoogleAccountStatus, Job
from tests.fixtures.accounts import TEST_CLIENT_SECRET
from tests.fixtures.emulator import ALIAS, OWNER

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, user, google_settings, emulator):
    emulator.require_token = True
    client.force_login(user)
    return client


def consent(signed_in, emulator, **params: str) -> str:
    """Start the flow and let the emulator's consent screen approve; the callback URL it gives."""
    response = signed_in.get(reverse("google:connect"), params)
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(f"{emulator.url}o/oauth2/auth?")
    query = parse_qs(urlsplit(location).query)
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    assert set(query["scope"][0].split()) == set(SCOPES)
    http = httplib2.Http(timeout=5)
    http.follow_redirects = False
    answer, _ = http.request(location)
    assert answer.status == 302
    back = urlsplit(answer["location"])
    assert back.path == reverse("google:callback")
    return f"{back.path}?{back.query}"


def test_the_full_flow_stores_an_encrypted_active_account(signed_in, user, emulator):
    callback = consent(signed_in, emulator)
    response = signed_in.get(callback)
    assert response.status_code == 302 and response["Location"] == reverse("google:index")
    account = GoogleAccount.objects.get(user=user)
    assert account.email == OWNER and account.status == GoogleAccountStatus.ACTIVE
    assert set(account.addresses) == {OWNER, ALIAS}
    assert set(account.scopes) == set(SCOPES)
    refresh_token = decrypt_token(account.refresh_token_encrypted)
    access_token = decrypt_token(account.access_token_encrypted)
    assert refresh_token.startswith("1//") and refresh_token not in account.refresh_token_encrypted
    assert access_token.startswith("ya29.") and access_token not in account.access_token_encrypted
    # The stored access token is used as is; no refresh needed yet.
    assert get_credentials(account).token == access_token
    assert emulator.log.count(route="oauth.token") == 1
    jobs = Job.objects.filter(user=user)
    assert sorted(job.kind for job in jobs) == ["calendar_sync", "gmail_sync"]
    assert all(job.payload["account_id"] == account.pk for job in jobs)
    page = signed_in.get(reverse("google:index")).content.decode()
    assert f"Connected {OWNER}" in page
    assert refresh_token not in page and access_token not in page


def test_the_flow_logs_no_token(signed_in, user, emulator, caplog):
    caplog.set_level(logging.DEBUG)
    callback = consent(signed_in, emulator)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    signed_in.get(callback)
    account = GoogleAccount.objects.get(user=user)
    secrets = [
        code,
        decrypt_token(account.refresh_token_encrypted),
        decrypt_token(account.access_token_encrypted),
        TEST_CLIENT_SECRET,
    ]
    assert caplog.records
    for secret in secrets:
        assert secret not in caplog.text


def test_a_missing_state_is_rejected_and_nothing_is_stored(signed_in, emulator):
    callback = consent(signed_in, emulator)
    without_state = callback.replace("state=", "x=")
    response = signed_in.get(without_state)
    assert response.status_code == 400
    assert b"Missing OAuth state" in response.content
    assert not GoogleAccount.objects.exists()


def test_a_wrong_state_is_rejected_and_nothing_is_stored(signed_in, emulator):
    callback = consent(signed_in, emulator)
    path, _, query = callback.partition("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    params["state"] = "forged"
    response = signed_in.get(path, params)
    assert response.status_code == 400
    assert b"does not match" in response.content
    assert not GoogleAccount.objects.exists()
    assert emulator.log.count(route="oauth.token") == 0


def test_a_state_is_good_for_one_callback_only(signed_in, emulator):
    callback = consent(signed_in, emulator)
    assert signed_in.get(callback).status_code == 302
    assert signed_in.get(callback).status_code == 400


def test_a_denied_consent_is_a_clear_error(signed_in, emulator):
    callback = consent(signed_in, emulator)
    path, _, query = callback.partition("?")
    state = parse_qs(query)["state"][0]
    response = signed_in.get(path, {"state": state, "error": "access_denied"})
    assert response.status_code == 400
    assert b"access_denied" in response.content
    assert not GoogleAccount.objects.exists()


def test_item24_the_pages_send_an_anonymous_user_to_the_projects_login_url(
    client, google_settings, settings
):
    settings.LOGIN_URL = "/sign-in/"
    for name in ("google:index", "google:connect", "google:callback"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"] == f"/sign-in/?next={reverse(name)}"


def test_item24_a_user_who_is_not_staff_can_connect(signed_in, user, emulator):
    assert not user.is_staff

    signed_in.get(consent(signed_in, emulator))

    assert GoogleAccount.objects.get(user=user).status == GoogleAccountStatus.ACTIVE


def test_item24_the_callback_reads_the_addresses_and_starts_one_sync_per_provider(
    signed_in, user, emulator
):
    emulator.mailbox(OWNER).aliases = (ALIAS, "later@alias.example")
    callback = consent(signed_in, emulator)

    signed_in.get(callback)

    account = GoogleAccount.objects.get(user=user)
    assert account.addresses == [OWNER, ALIAS, "later@alias.example"]
    jobs = Job.objects.filter(user=user)
    assert sorted((job.kind, job.payload["account_id"]) for job in jobs) == [
        ("calendar_sync", account.pk),
        ("gmail_sync", account.pk),
    ]
    assert len({job.batch_id for job in jobs}) == 1


def test_item24_connect_asks_google_for_a_given_address(signed_in, emulator):
    response = signed_in.get(reverse("google:connect"), {"email": OWNER})

    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["login_hint"] == [OWNER]
    assert "login_hint" not in signed_in.get(reverse("google:connect"))["Location"]


def test_item24_an_account_that_does_not_sync_has_a_connect_link_for_its_address(signed_in, user):
    GoogleAccount.objects.create(user=user, email="ada@example.com", status="offline")

    page = signed_in.get(reverse("google:index")).content.decode()

    assert f'href="{reverse("google:connect")}?email=ada%40example.com"' in page


def test_disconnect_revokes_at_google_and_forgets_the_tokens(
    client, user, google_account, emulator
):
    client.force_login(user)
    refresh_token = decrypt_token(google_account.refresh_token_encrypted)
    url = reverse("google:disconnect", args=[google_account.pk])
    assert client.get(url).status_code == 405
    response = client.post(url)
    assert response.status_code == 302
    google_account.refresh_from_db()
    assert google_account.status == GoogleAccountStatus.REVOKED
    assert google_account.refresh_token_encrypted == google_account.access_token_encrypted == ""
    assert emulator.log.count(route="oauth.revoke") == 1
    with pytest.raises(OAuthError, match="invalid_grant"):  # the grant is gone at Google too
        emulator.accounts.refresh({"refresh_token": refresh_token})


def test_a_user_cannot_disconnect_someone_elses_account(client, other_user, google_account):
    client.force_login(other_user)
    response = client.post(reverse("google:disconnect", args=[google_account.pk]))
    assert response.status_code == 404
    google_account.refresh_from_db()
    assert google_account.status == GoogleAccountStatus.ACTIVE


def test_disconnect_succeeds_locally_when_google_is_unreachable(
    client, user, google_account, settings
):
    settings.GOOGLE_REVOKE_URI = "http://127.0.0.1:9/revoke"  # discard port: refused
    client.force_login(user)
    client.post(reverse("google:disconnect", args=[google_account.pk]))
    google_account.refresh_from_db()
    assert google_account.status == GoogleAccountStatus.REVOKED
    assert not google_account.has_refresh_token


class TestAdmin:
    def test_pages_show_whether_a_token_is_set_but_never_the_token(
        self, staff_client, google_account
    ):
        access_token = get_credentials(google_account).token
        google_account.refresh_from_db()
        secrets = [
            decrypt_token(google_account.refresh_token_encrypted),
            access_token,
            google_account.refresh_token_encrypted,
            google_account.access_token_encrypted,
        ]
        changelist = staff_client.get(reverse("admin:jobs_googleaccount_changelist"))
        change = staff_client.get(
            reverse("admin:jobs_googleaccount_change", args=[google_account.pk])
        )
        assert changelist.status_code == change.status_code == 200
        assert OWNER in changelist.content.decode() and "Token set" in change.content.decode()
        for page in (changelist.content.decode(), change.content.decode()):
            for secret in secrets:
                assert secret not in page
        assert "_encrypted" not in change.content.decode()

    def test_the_disconnect_action_revokes_the_selected_accounts(
        self, staff_client, google_account, emulator
    ):
        response = staff_client.post(
            reverse("admin:jobs_googleaccount_changelist"),
            {"action": "disconnect_accounts", "_selected_action": [google_account.pk]},
            follow=True,
        )
        assert "1 account(s) disconnected" in response.content.decode()
        google_account.refresh_from_db()
        assert google_account.status == GoogleAccountStatus.REVOKED
        assert emulator.log.count(route="oauth.revoke") == 1


def test_item24_the_standalone_project_signs_in_a_user_who_is_not_staff(client, user):
    page = client.get(reverse("google:index"))
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/?next=")
    assert client.get(page["Location"]).status_code == 200

    signed_in = client.post(page["Location"], {"username": "ada", "password": "pw"})

    assert signed_in.status_code == 302 and signed_in["Location"] == reverse("google:index")
    assert client.get(reverse("google:index")).status_code == 200


def test_item24_an_unreadable_send_as_list_still_connects_and_starts_the_sync(
    signed_in, user, emulator
):
    emulator.faults.add("gmail.users.settings.sendAs.list", 403, reason="forbidden")
    callback = consent(signed_in, emulator)

    response = signed_in.get(callback)

    assert response.status_code == 302
    account = GoogleAccount.objects.get(user=user)
    assert account.addresses == [OWNER]  # the sync reads the aliases again
    assert Job.objects.filter(user=user).count() == 2


def test_item24_an_unreachable_profile_stores_nothing(signed_in, user, emulator):
    emulator.faults.add("gmail.users.getProfile", 403, reason="forbidden")
    callback = consent(signed_in, emulator)

    response = signed_in.get(callback)

    assert response.status_code == 502
    assert not GoogleAccount.objects.exists() and not Job.objects.exists()
