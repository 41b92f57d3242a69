"""The push endpoints: only verified pushes enqueue a sync, forged ones get 401/403 and change
nothing, malformed bodies 400, and the answers Pub/Sub and Calendar act on."""

from __future__ import annotations

import base64
import json
import time

import pytest
from django.urls import reverse

from google_emulator.push import PushSigner
from jobs.google.accounts import google_account_connect
from jobs.google.tokens import decrypt_token
from jobs.models import GoogleAccount, Job, PushChannel, PushChannelStatus, SyncState
from jobs.sync.push import push_reconcile
from tests.fixtures.accounts import CALENDAR_READONLY, GMAIL_READONLY
from tests.fixtures.emulator import OWNER
from tests.fixtures.push import AUDIENCE, PUSH_ACCOUNT, bearer, gmail_envelope

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("push_settings")]

GMAIL = "/google/push/gmail/"
CALENDAR = "/google/push/calendar/"


@pytest.fixture(autouse=True)
def no_handoff(pipeline_config):
    pipeline_config(handoff="none")


def push(client, body: object, authorization: str | None):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    return client.post(GMAIL, data=data, content_type="application/json", **headers)


def syncs(kind: str = "gmail_sync") -> list[dict]:
    return list(Job.objects.filter(kind=kind).order_by("id").values_list("payload", flat=True))


def test_the_urls_are_where_the_docs_say():
    assert reverse("google:push-gmail") == GMAIL
    assert reverse("google:push-calendar") == CALENDAR


def test_a_verified_push_enqueues_one_incremental_sync_and_answers_204(
    client, emulator, google_account
):
    answer = push(client, gmail_envelope(OWNER, 5000), bearer(emulator))

    assert answer.status_code == 204
    assert syncs() == [{"account_id": google_account.pk, "full": False}]


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda emu: None, id="no-token"),
        pytest.param(lambda emu: "Bearer garbage", id="not-a-jwt"),
        pytest.param(
            lambda emu: "Bearer " + PushSigner().token(audience=AUDIENCE, email=PUSH_ACCOUNT),
            id="unknown-key",
        ),
        pytest.param(lambda emu: _same_kid_other_key(emu), id="bad-signature"),
        pytest.param(lambda emu: bearer(emu, audience="https://x.example/"), id="wrong-audience"),
        pytest.param(
            lambda emu: bearer(emu, issued_at=time.time() - 7200, lifetime_s=3600), id="expired"
        ),
        pytest.param(lambda emu: bearer(emu, issuer="https://issuer.example"), id="wrong-issuer"),
        pytest.param(lambda emu: bearer(emu, email="x@y.iam.gserviceaccount.com"), id="wrong-sa"),
    ],
)
def test_a_forged_push_is_refused_and_enqueues_nothing(client, emulator, google_account, forge):
    answer = push(client, gmail_envelope(OWNER, 5000), forge(emulator))

    assert answer.status_code in (401, 403)
    assert not Job.objects.exists()
    assert not PushChannel.objects.filter(notifications__gt=0).exists()


def _same_kid_other_key(emulator) -> str:
    forger = PushSigner()
    forger.kid = emulator.push.signer.kid
    return f"Bearer {forger.token(audience=AUDIENCE, email=PUSH_ACCOUNT)}"


def test_the_audience_answer_is_403_and_a_bad_token_401(client, emulator, google_account):
    assert push(client, gmail_envelope(OWNER, 1), bearer(emulator, audience="x")).status_code == 403
    answer = push(client, gmail_envelope(OWNER, 1), "Bearer garbage")
    assert answer.status_code == 401 and "invalid_token" in answer["WWW-Authenticate"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        {"subscription": "projects/p/subscriptions/s"},
        {"message": {"data": "%%% not base64 %%%"}},
        {"message": {"data": base64.b64encode(b"[1, 2]").decode()}},
        {"message": {"data": base64.b64encode(b'{"emailAddress": "a@b.example"}').decode()}},
        gmail_envelope("not-an-address", 12),
        gmail_envelope(OWNER, "12abc"),
    ],
)
def test_a_verified_push_with_a_malformed_body_is_400(client, emulator, google_account, body):
    answer = push(client, body, bearer(emulator))

    assert answer.status_code == 400
    assert not Job.objects.exists()


def test_a_history_id_not_newer_than_the_cursor_does_nothing(client, emulator, google_account):
    SyncState.objects.create(
        user_id=google_account.user_id, account=google_account, provider="gmail", cursor="7000"
    )

    assert push(client, gmail_envelope(OWNER, 7000), bearer(emulator)).status_code == 204
    assert push(client, gmail_envelope(OWNER, 6999), bearer(emulator)).status_code == 204
    assert not Job.objects.exists()

    assert push(client, gmail_envelope(OWNER, 7001), bearer(emulator)).status_code == 204
    assert len(syncs()) == 1


def test_a_mailbox_no_account_syncs_is_acknowledged(client, emulator, google_account):
    # Acknowledged (2xx): Pub/Sub would redeliver anything else for days to no avail.
    answer = push(client, gmail_envelope("stranger@elsewhere.example", 5), bearer(emulator))

    assert answer.status_code == 204
    assert not Job.objects.exists()


def test_one_mailbox_connected_by_two_users_syncs_for_both(
    client, emulator, google_account, other_user, user
):
    second = google_account_connect(
        user=other_user,
        email=OWNER.upper(),
        refresh_token=emulator.register_account(OWNER),
        scopes=[GMAIL_READONLY, CALENDAR_READONLY],
    )
    # The first user's other account (another mailbox) is not this notification's business.
    google_account_connect(
        user=user,
        email="ada.second@pipeline.example",
        refresh_token=emulator.register_account("ada.second@pipeline.example"),
    )

    assert push(client, gmail_envelope(OWNER, 5000), bearer(emulator)).status_code == 204

    assert sorted(p["account_id"] for p in syncs()) == sorted([google_account.pk, second.pk])
    users = set(Job.objects.values_list("user_id", flat=True))
    assert users == {user.pk, other_user.pk}


def test_a_disconnected_account_is_not_synced_by_a_late_push(client, emulator, google_account):
    GoogleAccount.objects.filter(pk=google_account.pk).update(status="revoked")

    assert push(client, gmail_envelope(OWNER, 5000), bearer(emulator)).status_code == 204
    assert not Job.objects.exists()


def test_only_post_and_only_when_configured(client, emulator, google_account, pipeline_config):
    assert client.get(GMAIL).status_code == 405
    pipeline_config(push_gmail_topic="", push_calendar_address="")
    assert push(client, gmail_envelope(OWNER, 1), bearer(emulator)).status_code == 404
    assert client.post(CALENDAR).status_code == 404
    assert not Job.objects.exists()


# -- Calendar -----------------------------------------------------------------------------------


@pytest.fixture
def channel(emulator, google_account) -> PushChannel:
    """The primary calendar's channel, opened at the emulator by the real renewal service."""
    push_reconcile(account=google_account)
    row = PushChannel.objects.get(provider="calendar", resource_id=OWNER)
    return row


def calendar_push(client, channel_id: str, token: str | None, state: str = "exists", **extra):
    headers = {
        "HTTP_X_GOOG_CHANNEL_ID": channel_id,
        "HTTP_X_GOOG_RESOURCE_STATE": state,
        "HTTP_X_GOOG_MESSAGE_NUMBER": "2",
        **extra,
    }
    if token is not None:
        headers["HTTP_X_GOOG_CHANNEL_TOKEN"] = token
    return client.post(CALENDAR, **headers)


def the_token(emulator, channel: PushChannel) -> str:
    (sent,) = [c for c in emulator.push.channels() if c.id == channel.channel_id]
    return sent.token


def test_the_channel_token_is_random_and_stored_encrypted(emulator, channel):
    token = the_token(emulator, channel)

    assert len(token) >= 40 and token not in channel.token_encrypted
    assert decrypt_token(channel.token_encrypted) == token


def test_a_calendar_change_enqueues_a_sync_of_that_calendar(client, emulator, channel):
    answer = calendar_push(client, channel.channel_id, the_token(emulator, channel))

    assert answer.status_code == 204
    assert syncs("calendar_sync") == [
        {"account_id": channel.account_id, "full": False, "calendar_ids": [OWNER]}
    ]
    channel.refresh_from_db()
    assert channel.notifications == 1 and channel.notified_at is not None


def test_the_first_sync_message_enqueues_nothing(client, emulator, channel):
    answer = calendar_push(client, channel.channel_id, the_token(emulator, channel), "sync")

    assert answer.status_code == 204 and not Job.objects.exists()


def test_an_unknown_channel_or_a_wrong_token_is_403_and_enqueues_nothing(client, emulator, channel):
    token = the_token(emulator, channel)
    assert calendar_push(client, channel.channel_id, token[:-1] + "x").status_code == 403
    assert calendar_push(client, channel.channel_id, None).status_code == 403
    assert calendar_push(client, "no-such-channel", token).status_code == 403
    wrong_resource = calendar_push(
        client, channel.channel_id, token, HTTP_X_GOOG_RESOURCE_ID="another-resource"
    )
    assert wrong_resource.status_code == 403
    assert calendar_push(client, "", token).status_code == 400
    assert not Job.objects.exists()
    channel.refresh_from_db()
    assert channel.notifications == 0


def test_a_failed_channel_is_refused_and_enqueues_nothing(client, emulator, channel):
    # Its watch call failed: the channel is not ours to trust, even with the right token.
    PushChannel.objects.filter(pk=channel.pk).update(status=PushChannelStatus.FAILED)

    answer = calendar_push(client, channel.channel_id, the_token(emulator, channel))

    assert answer.status_code == 403
    assert not Job.objects.exists()
    channel.refresh_from_db()
    assert channel.notifications == 0
