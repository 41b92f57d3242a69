"""manage.py rotate_tokens: every token re-encrypted under the newest key, safely re-runnable."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from jobs.google.accounts import google_account_connect
from jobs.google.tokens import decrypt_token
from jobs.models import GoogleAccount

pytestmark = pytest.mark.django_db

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def stored_ciphertexts() -> dict[int, tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, refresh_token_encrypted, access_token_encrypted "
            f"FROM {GoogleAccount._meta.db_table} ORDER BY id"
        )
        return {row[0]: (row[1], row[2]) for row in cursor.fetchall()}


@pytest.fixture
def accounts(settings, user, other_user) -> dict[int, tuple[str, str]]:
    """Three accounts encrypted under OLD: their clear (refresh, access) tokens by id."""
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [OLD]
    clear = {}
    for owner, email, access in [
        (user, "a@example.com", "ya29.access-a"),
        (user, "b@example.com", ""),
        (other_user, "c@example.com", "ya29.access-c"),
    ]:
        account = google_account_connect(
            user=owner, email=email, refresh_token=f"1//refresh-{email}", access_token=access
        )
        clear[account.pk] = (f"1//refresh-{email}", access)
    return clear


def rotate_tokens(*args: str) -> str:
    out = StringIO()
    call_command("rotate_tokens", *args, stdout=out)
    return out.getvalue()


def test_it_re_encrypts_every_token_under_the_new_key(settings, accounts):
    before = stored_ciphertexts()
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [NEW, OLD]
    # During the rotation the old ciphertexts still decrypt.
    assert all(decrypt_token(refresh) == accounts[pk][0] for pk, (refresh, _) in before.items())
    output = rotate_tokens("--chunk-size", "2")
    assert "3 account(s): 5 token(s) re-encrypted, 0 already under the current key" in output
    after = stored_ciphertexts()
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [NEW]
    for pk, (refresh, access) in after.items():
        assert refresh != before[pk][0]
        assert decrypt_token(refresh) == accounts[pk][0]
        assert decrypt_token(access) == accounts[pk][1]
        assert accounts[pk][0] not in refresh


def test_running_it_again_changes_nothing(settings, accounts):
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [NEW, OLD]
    rotate_tokens()
    once = stored_ciphertexts()
    assert "0 token(s) re-encrypted, 5 already under the current key" in rotate_tokens()
    assert stored_ciphertexts() == once


def test_a_token_no_key_opens_is_a_clear_error(settings, accounts):
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [NEW]
    with pytest.raises(CommandError, match=r"Google account \d+: its refresh_token_encrypted"):
        rotate_tokens()


def test_verbosity_zero_prints_nothing(settings, accounts):
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [NEW, OLD]
    assert rotate_tokens("--verbosity", "0") == ""
