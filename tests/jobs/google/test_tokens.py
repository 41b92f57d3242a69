"""Token encryption at rest: Fernet keys from settings, rotation, the production key check."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from jobs.google import tokens
from jobs.google.tokens import TokenDecryptionError, decrypt_token, encrypt_token, rotate
from jobs.models import GoogleAccount

NEW = Fernet.generate_key().decode()
OLD = Fernet.generate_key().decode()
SECRET = "1//refresh-token-that-must-never-leak"


def test_a_token_round_trips_and_the_ciphertext_does_not_contain_it(settings):
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [NEW]
    ciphertext = encrypt_token(SECRET)
    assert SECRET not in ciphertext
    assert decrypt_token(ciphertext) == SECRET
    assert encrypt_token("") == "" and decrypt_token("") == ""


def test_the_first_key_encrypts_and_every_key_decrypts(settings):
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [OLD]
    old_ciphertext = encrypt_token(SECRET)
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = f"{NEW},{OLD}"  # as the environment gives it
    assert decrypt_token(old_ciphertext) == SECRET
    new_ciphertext = encrypt_token(SECRET)
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [NEW]
    assert decrypt_token(new_ciphertext) == SECRET
    with pytest.raises(TokenDecryptionError, match="rotate_tokens"):
        decrypt_token(old_ciphertext)


def test_rotate_re_encrypts_under_the_first_key(settings):
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [OLD]
    old_ciphertext = encrypt_token(SECRET)
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [NEW, OLD]
    rotated = rotate(old_ciphertext)
    assert rotated != old_ciphertext
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [NEW]
    assert decrypt_token(rotated) == SECRET


def test_a_malformed_key_is_reported_without_echoing_it(settings):
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = [NEW, "not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="key #2 is not a valid Fernet key") as caught:
        encrypt_token(SECRET)
    assert "not-a-fernet-key" not in str(caught.value)
    assert [e.id for e in tokens.check_encryption_keys()] == ["crm_pipeline.E002"]


def test_debug_without_keys_uses_a_development_key_derived_from_secret_key(settings):
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = []
    settings.DEBUG = True
    ciphertext = encrypt_token(SECRET)
    assert decrypt_token(ciphertext) == SECRET
    assert tokens.check_encryption_keys() == []
    settings.SECRET_KEY = "another-secret"
    with pytest.raises(TokenDecryptionError):
        decrypt_token(ciphertext)


def test_production_without_keys_refuses_to_start_and_to_encrypt(settings):
    settings.CRM_PIPELINE_ENCRYPTION_KEYS = []
    settings.DEBUG = False
    settings.TESTING = False
    errors = tokens.check_encryption_keys()
    assert [e.id for e in errors] == ["crm_pipeline.E001"]
    assert "CRM_PIPELINE_ENCRYPTION_KEYS is not set" in errors[0].msg
    with pytest.raises(ImproperlyConfigured, match="CRM_PIPELINE_ENCRYPTION_KEYS is not set"):
        encrypt_token(SECRET)


def test_the_check_is_registered_with_django(settings):
    from django.core import checks

    settings.CRM_PIPELINE_ENCRYPTION_KEYS = []
    settings.DEBUG = False
    settings.TESTING = False
    assert "crm_pipeline.E001" in {e.id for e in checks.run_checks()}


@pytest.mark.django_db
def test_the_database_never_holds_a_token_in_clear(google_account):
    from jobs.google.credentials import get_credentials

    access_token = get_credentials(google_account).token
    refresh_token = decrypt_token(google_account.refresh_token_encrypted)
    table = GoogleAccount._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT refresh_token_encrypted, access_token_encrypted FROM {table} WHERE id = %s",
            [google_account.pk],
        )
        stored_refresh, stored_access = cursor.fetchone()
    assert refresh_token and access_token
    assert stored_refresh and refresh_token not in stored_refresh
    assert stored_access and access_token not in stored_access
    assert decrypt_token(stored_access) == access_token
