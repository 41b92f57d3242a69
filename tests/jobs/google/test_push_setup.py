"""Push around the edges: its configuration checked at start-up (jobs.E001), started at connect,
its health in the GoogleAccount admin, its channel tokens rotated with the OAuth tokens."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import reverse

from jobs.config import get_config
from jobs.google.accounts import google_account_connect
from jobs.google.tokens import decrypt_token
from jobs.models import GoogleAccount, Job, PushChannel
from jobs.sync.push import push_reconcile
from tests.fixtures.emulator import OWNER
from tests.jobs.google.test_oauth_views import consent

SHARED_CALENDAR = "c_839511c777138af419bf@group.calendar.google.com"


def refused(settings, value: dict) -> str:
    settings.CRM_PIPELINE = value
    with pytest.raises(SystemCheckError) as caught:
        call_command("check")
    return str(caught.value)


def test_push_is_off_by_default():
    config = get_config()
    assert config.push_gmail_topic == "" and config.push_calendar_address == ""
    assert config.push_jwks_url == "https://www.googleapis.com/oauth2/v3/certs"


def test_a_complete_push_configuration_passes_the_check(settings):
    settings.CRM_PIPELINE = {
        "push_gmail_topic": "projects/acme-crm/topics/gmail",
        "push_gmail_audience": "https://crm.acme.example/google/push/gmail/",
        "push_gmail_service_account": "push@acme-crm.iam.gserviceaccount.com",
        "push_gmail_label_ids": ["INBOX", "SENT"],
        "push_calendar_address": "https://crm.acme.example/google/push/calendar/",
        "push_poll_minutes": 120,
    }
    call_command("check")
    assert get_config().push_gmail_label_ids == ("INBOX", "SENT")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"push_gmail_topic": "gmail-topic", "push_gmail_audience": "x"},
            "CRM_PIPELINE['push_gmail_topic']: got \"gmail-topic\"; expected a string matching",
        ),
        (
            {"push_gmail_topic": "projects/p/topics/t"},
            "CRM_PIPELINE['push_gmail_audience']: got \"\"; expected the audience",
        ),
        (
            {"push_gmail_topic": "projects/p/topics/t", "push_gmail_audience": "https://a/"},
            "CRM_PIPELINE['push_gmail_service_account']: got \"\"; expected the service account",
        ),
        (
            {"push_calendar_address": "http://crm.acme.example/google/push/calendar/"},
            "CRM_PIPELINE['push_calendar_address']: got \"http://crm.acme.example",
        ),
        (
            {"push_poll_minutes": 5},
            "CRM_PIPELINE['push_poll_minutes']: got 5; expected a number >= periodic_sync_minutes",
        ),
        (
            {"push_gmail_rewatch_after_s": 8 * 86_400},
            "CRM_PIPELINE['push_gmail_rewatch_after_s']: got 691200; expected a number between",
        ),
        (
            {"push_gmail_service_account": "not an address"},
            "CRM_PIPELINE['push_gmail_service_account']: got \"not an address\"",
        ),
    ],
)
def test_a_bad_push_configuration_is_refused_at_start_up(settings, overrides, expected):
    assert expected in refused(settings, overrides)


@pytest.mark.django_db
def test_connecting_an_account_starts_its_push_renewal(
    client, user, google_settings, emulator, push_settings, pipeline_config
):
    pipeline_config(handoff="none")
    emulator.require_token = True
    client.force_login(user)

    client.get(consent(client, emulator))

    account = GoogleAccount.objects.get(user=user)
    kinds = sorted(Job.objects.filter(user=user).values_list("kind", flat=True))
    assert kinds == ["calendar_sync", "gmail_sync", "push_renew"]
    assert Job.objects.get(kind="push_renew").payload == {"account_id": account.pk}


@pytest.mark.django_db
def test_without_push_connecting_starts_no_renewal(client, user, google_settings, emulator):
    emulator.require_token = True
    client.force_login(user)

    client.get(consent(client, emulator))

    assert not Job.objects.filter(kind="push_renew").exists()


@pytest.mark.django_db
def test_the_account_admin_shows_push_health_and_never_a_channel_token(
    staff_client, google_account, emulator, push_settings
):
    push_reconcile(account=google_account)
    tokens = [c.token for c in emulator.push.channels()]

    changelist = staff_client.get(reverse("admin:jobs_googleaccount_changelist")).content.decode()
    change = staff_client.get(
        reverse("admin:jobs_googleaccount_change", args=[google_account.pk])
    ).content.decode()
    channels = staff_client.get(reverse("admin:jobs_pushchannel_changelist")).content.decode()

    assert "Gmail push" in changelist and "Calendar push" in changelist
    assert changelist.count("healthy") >= 2
    assert "Gmail push" in change and "healthy" in change
    assert "Push channels" in change and SHARED_CALENDAR in change
    assert OWNER in channels
    for page in (changelist, change, channels):
        for token in tokens:
            assert token not in page
        for row in PushChannel.objects.exclude(token_encrypted=""):
            assert row.token_encrypted not in page


@pytest.mark.django_db
def test_the_admin_says_push_is_failing_and_why(
    staff_client, google_account, emulator, push_settings, pipeline_config
):
    pipeline_config(push_gmail_topic="projects/crm-test/topics/missing")
    push_reconcile(account=google_account)

    page = staff_client.get(reverse("admin:jobs_googleaccount_changelist")).content.decode()

    assert "failing: watch failed" in page and "not authorized" in page


@pytest.mark.django_db
def test_rotate_tokens_re_encrypts_channel_tokens_too(
    settings, google_account, emulator, push_settings
):
    old = Fernet.generate_key().decode()
    new = Fernet.generate_key().decode()
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [old]
    account = google_account_connect(
        user=google_account.user,
        email=OWNER,
        refresh_token=emulator.register_account(OWNER),
        scopes=google_account.scopes,
    )
    push_reconcile(account=account)
    clear = {row.pk: decrypt_token(row.token_encrypted) for row in PushChannel.objects.all()}
    assert len([t for t in clear.values() if t]) == 2

    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [new, old]
    out = StringIO()
    call_command("rotate_tokens", stdout=out)
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [new]

    for row in PushChannel.objects.exclude(token_encrypted=""):
        assert decrypt_token(row.token_encrypted) == clear[row.pk]
    assert "4 token(s) re-encrypted" in out.getvalue()  # refresh, access, two channels
