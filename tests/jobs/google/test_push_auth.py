"""Verifying Pub/Sub's OIDC push tokens: signature against the JWKS (fetched over HTTP from the
emulator), issuer, audience, expiry, service account; the key cache and its bounded refetch."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from google_emulator.push import PushSigner
from jobs.config import get_config
from jobs.google.push_auth import PushAuthError, jwks_cache, max_age, pubsub_token_verify
from tests.fixtures.push import AUDIENCE, PUSH_ACCOUNT, bearer

pytestmark = pytest.mark.usefixtures("push_settings")


def certs_fetched(emulator) -> int:
    return emulator.log.count("emulator.certs")


def refused(header: str | None) -> int:
    with pytest.raises(PushAuthError) as error:
        pubsub_token_verify(header)
    return error.value.status


def test_a_token_google_signed_for_our_audience_verifies(emulator):
    claims = pubsub_token_verify(bearer(emulator))

    assert claims["aud"] == AUDIENCE and claims["email"] == PUSH_ACCOUNT
    assert claims["iss"] == "https://accounts.google.com"


def test_both_google_issuer_spellings_are_accepted_and_nothing_else(emulator):
    assert pubsub_token_verify(bearer(emulator, issuer="accounts.google.com"))
    assert refused(bearer(emulator, issuer="https://evil.example")) == 401


def test_forged_and_misdirected_tokens_are_refused(emulator):
    # Signed with another key that claims Google's key id: the signature does not verify.
    forger = PushSigner()
    forger.kid = emulator.push.signer.kid
    forged = forger.token(audience=AUDIENCE, email=PUSH_ACCOUNT)
    assert refused(f"Bearer {forged}") == 401
    assert refused(bearer(emulator, audience="https://other.example/push")) == 403
    expired = bearer(emulator, issued_at=time.time() - 7200, lifetime_s=3600)
    assert refused(expired) == 401
    assert refused(bearer(emulator, email="someone@else.iam.gserviceaccount.com")) == 403
    assert refused(None) == 401
    assert refused("Basic dXNlcjpwdw==") == 401
    assert refused("Bearer not-a-jwt") == 401


def test_without_a_configured_service_account_no_token_verifies(emulator, pipeline_config):
    # Anyone can mint a Google-signed ID token for any audience: the audience alone proves
    # nothing, so a configuration without the service account verifies no push at all.
    pipeline_config(push_gmail_topic="", push_gmail_service_account="")

    assert refused(bearer(emulator, email="any@x.iam.gserviceaccount.com")) == 403
    assert refused(bearer(emulator)) == 403


def test_an_unverified_service_account_email_is_refused(emulator):
    assert refused(bearer(emulator, email_verified=False)) == 403


def _segment(part: dict) -> str:
    raw = json.dumps(part, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims() -> dict:
    now = int(time.time())
    return {
        "aud": AUDIENCE,
        "email": PUSH_ACCOUNT,
        "email_verified": True,
        "iss": "https://accounts.google.com",
        "iat": now,
        "exp": now + 3600,
    }


def test_an_unsigned_alg_none_token_is_refused(emulator):
    header = {"alg": "none", "typ": "JWT", "kid": emulator.push.signer.kid}
    token = f"{_segment(header)}.{_segment(_claims())}."

    assert refused(f"Bearer {token}") == 401


def test_an_hs256_token_keyed_with_the_public_key_is_refused(emulator):
    # Algorithm confusion: HMAC with Google's public key (which anyone has) as the secret.
    (published,) = emulator.push.signer.jwks()["keys"]
    public_key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(published))
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": emulator.push.signer.kid}
    signing_input = f"{_segment(header)}.{_segment(_claims())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    assert refused(f"Bearer {token}") == 401


def test_keys_are_fetched_once_while_their_max_age_lasts(emulator):
    for _ in range(5):
        pubsub_token_verify(bearer(emulator))

    assert certs_fetched(emulator) == 1


def test_an_expired_cache_is_fetched_again(emulator):
    emulator.push.jwks_max_age_s = 0

    pubsub_token_verify(bearer(emulator))
    pubsub_token_verify(bearer(emulator))

    assert certs_fetched(emulator) == 2


def test_an_unknown_key_id_refetches_at_most_once_per_interval(emulator, pipeline_config):
    pubsub_token_verify(bearer(emulator))
    stranger = PushSigner()  # a key id Google never published
    for _ in range(20):
        with pytest.raises(PushAuthError):
            pubsub_token_verify(f"Bearer {stranger.token(audience=AUDIENCE, email=PUSH_ACCOUNT)}")
    assert certs_fetched(emulator) == 1  # the first fetch was under a second ago

    # Google rotated its key: the new key id is unknown, and the refetch finds it.
    pipeline_config(push_jwks_refetch_min_s=0)
    emulator.push.signer = PushSigner()
    assert pubsub_token_verify(bearer(emulator))
    assert certs_fetched(emulator) == 2


def test_unreachable_keys_answer_503_so_pubsub_retries(emulator, pipeline_config):
    pipeline_config(push_jwks_url="http://127.0.0.1:9/certs")

    assert refused(bearer(emulator)) == 503


def test_max_age_reads_cache_control():
    assert max_age("public, max-age=19524, must-revalidate, no-transform") == 19524
    assert max_age("no-store") == 0 and max_age("private, no-cache, max-age=60") == 0
    assert max_age(None) == 300.0


def test_one_cache_per_url(emulator):
    config = get_config()
    cache = jwks_cache(config.push_jwks_url)
    assert cache is jwks_cache(config.push_jwks_url)
    assert cache.key(emulator.push.signer.kid, config=config) is not None


def test_keys_stay_usable_while_google_fails_and_are_not_refetched_per_push(
    emulator, pipeline_config
):
    emulator.push.jwks_max_age_s = 0  # every push would refetch
    assert pubsub_token_verify(bearer(emulator))
    emulator.faults.add("emulator.certs", 500)

    # Google's endpoint answers 500: the keys just read still verify, within the grace.
    for _ in range(5):
        assert pubsub_token_verify(bearer(emulator))
    # One failed refetch, then none until push_jwks_refetch_min_s has passed.
    assert certs_fetched(emulator) == 2

    # Past the grace, the stale keys are no longer trusted: 503, Pub/Sub retries.
    pipeline_config(push_jwks_stale_grace_s=0, push_jwks_refetch_min_s=0)
    assert refused(bearer(emulator)) == 503


def test_a_failing_first_fetch_is_not_repeated_per_push(emulator):
    emulator.faults.add("emulator.certs", 500)

    assert refused(bearer(emulator)) == 503
    assert refused(bearer(emulator)) == 503
    assert certs_fetched(emulator) == 1
