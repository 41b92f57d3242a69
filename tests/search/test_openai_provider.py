"""The `openai` embedding provider against the OpenAI-compatible stand-in server (real HTTP):
batching, order by index, Retry-After, retries, permanent errors, timeouts, dimension checks."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from search.embedding import get_provider
from search.embedding.base import EmbeddingError, EmbeddingProvider
from search.embedding.openai import OpenAIEmbeddingProvider
from search.openai_client import OpenAIClient
from tests.fixtures.openai_server import hashed_embedder

KEY_ENV = "CRM_PIPELINE_TEST_OPENAI_KEY"
SECRET = "sk-test-0123456789abcdef-secret"


def provider_for(server, **options) -> OpenAIEmbeddingProvider:
    client_options = {
        key: options.pop(key)
        for key in ("timeout_s", "max_retries", "backoff_base_s", "backoff_cap_s")
        if key in options
    }
    client = OpenAIClient(
        base_url=server.base_url,
        api_key_env=KEY_ENV,
        **{"timeout_s": 5.0, "max_retries": 3, "backoff_base_s": 0.01, **client_options},
    )
    options.setdefault("model", "nomic-embed-text")
    options.setdefault("dimensions", 64)
    return OpenAIEmbeddingProvider(client=client, **options)


def expected_vectors(texts: list[str], dims: int) -> np.ndarray:
    return np.asarray(hashed_embedder(texts, dims), dtype=np.float32)


TEXTS = [
    "the invoice is overdue",
    "payment for March is still outstanding",
    "lunch on friday?",
    "Grüße aus München",
    "quarterly report attached",
]


def test_it_is_an_embedding_provider_with_the_configured_model_and_dims(openai_server):
    provider = provider_for(openai_server, dimensions=48)
    assert isinstance(provider, EmbeddingProvider)
    assert (provider.name, provider.model, provider.dims) == ("openai", "nomic-embed-text", 48)
    assert provider.max_tokens == 8191
    assert openai_server.count("embeddings") == 0  # configured dims: no request needed


def test_it_sends_batches_of_batch_size_and_returns_unit_vectors_in_input_order(openai_server):
    provider = provider_for(openai_server, batch_size=2)
    vectors = provider.embed(TEXTS)
    assert vectors.shape == (5, 64) and vectors.dtype == np.float32
    assert [r.body["input"] for r in openai_server.requests] == [TEXTS[0:2], TEXTS[2:4], TEXTS[4:]]
    assert all(r.body["model"] == "nomic-embed-text" for r in openai_server.requests)
    assert all(r.body["dimensions"] == 64 for r in openai_server.requests)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors, expected_vectors(TEXTS, 64), atol=1e-6)


def test_it_orders_the_answer_by_index_not_by_position(openai_server):
    openai_server.reverse_data = True
    vectors = provider_for(openai_server, batch_size=10).embed(TEXTS)
    np.testing.assert_allclose(vectors, expected_vectors(TEXTS, 64), atol=1e-6)


def test_it_normalizes_vectors_the_server_did_not(openai_server):
    openai_server.embedder = lambda texts, dims: [[3.0, 4.0] + [0.0] * (dims - 2) for _ in texts]
    vectors = provider_for(openai_server).embed(["a", "b"])
    np.testing.assert_allclose(vectors[:, :2], [[0.6, 0.8], [0.6, 0.8]], atol=1e-6)


def test_an_empty_text_is_sent_as_a_space_the_api_accepts(openai_server):
    vectors = provider_for(openai_server).embed(["", "hello"])
    assert openai_server.requests[0].body["input"] == [" ", "hello"]
    assert vectors.shape == (2, 64)


def test_no_texts_make_no_request(openai_server):
    assert provider_for(openai_server).embed([]).shape == (0, 64)
    assert openai_server.count("embeddings") == 0


def test_the_key_comes_from_the_named_environment_variable(openai_server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    openai_server.api_key = SECRET
    provider_for(openai_server).embed(["hello"])
    assert openai_server.requests[0].headers["Authorization"] == f"Bearer {SECRET}"


def test_retry_after_is_honoured(openai_server):
    openai_server.fail_next(1, status=429, retry_after="1")
    started = time.monotonic()
    vectors = provider_for(openai_server, backoff_base_s=0.0).embed(["hello"])
    waited = time.monotonic() - started
    assert waited >= 1.0, f"retried after {waited:.3f} s, before Retry-After: 1"
    assert openai_server.count("embeddings") == 2
    np.testing.assert_allclose(vectors, expected_vectors(["hello"], 64), atol=1e-6)


def test_server_errors_are_retried_until_success(openai_server):
    openai_server.fail_next(2, status=503)
    openai_server.fail_next(1, status=500)
    vectors = provider_for(openai_server, max_retries=3).embed(["hello", "world"])
    assert openai_server.count("embeddings") == 4
    np.testing.assert_allclose(vectors, expected_vectors(["hello", "world"], 64), atol=1e-6)


def test_server_errors_beyond_max_retries_are_a_transient_error(openai_server):
    openai_server.fail_next(3, status=502)
    with pytest.raises(EmbeddingError) as caught:
        provider_for(openai_server, max_retries=2).embed(["hello"])
    assert caught.value.transient is True
    assert "HTTP 502" in str(caught.value) and "(after 3 attempts)" in str(caught.value)
    assert openai_server.count("embeddings") == 3


def test_a_wrong_key_is_permanent_not_retried_and_not_shown(openai_server, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)
    openai_server.api_key = "sk-the-right-one"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(EmbeddingError) as caught:
        provider_for(openai_server).embed(["hello"])
    assert caught.value.transient is False
    assert "HTTP 401" in str(caught.value)
    assert openai_server.count("embeddings") == 1
    assert openai_server.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
    for text in (str(caught.value), repr(caught.value.__cause__), caplog.text):
        assert SECRET not in text


def test_the_key_is_not_logged_when_a_request_is_retried(openai_server, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)
    openai_server.fail_next(1, status=503)
    caplog.set_level(logging.DEBUG)
    provider_for(openai_server).embed(["hello"])
    assert "retry 1/3" in caplog.text
    assert SECRET not in caplog.text


def test_an_unknown_model_is_permanent(openai_server):
    with pytest.raises(EmbeddingError) as caught:
        provider_for(openai_server, model="no-such-model").embed(["hello"])
    assert caught.value.transient is False
    assert "HTTP 404" in str(caught.value) and "no-such-model" in str(caught.value)
    assert openai_server.count("embeddings") == 1


def test_a_stalled_server_times_out_and_is_retried_then_transient(openai_server):
    openai_server.stall_next(2, seconds=1.5)
    started = time.monotonic()
    with pytest.raises(EmbeddingError) as caught:
        provider_for(openai_server, timeout_s=0.3, max_retries=1).embed(["hello"])
    elapsed = time.monotonic() - started
    assert caught.value.transient is True
    assert "no answer within 0.3 s" in str(caught.value)
    assert openai_server.count("embeddings") == 2
    assert elapsed < 1.5  # gave up on each attempt at its timeout, not at the stall's end


def test_a_timeout_then_an_answer_succeeds(openai_server):
    openai_server.stall_next(1, seconds=1.0)
    vectors = provider_for(openai_server, timeout_s=0.3).embed(["hello"])
    assert openai_server.count("embeddings") == 2
    np.testing.assert_allclose(vectors, expected_vectors(["hello"], 64), atol=1e-6)


def test_vectors_of_another_size_than_configured_are_permanent(openai_server):
    openai_server.embedder = lambda texts, dims: hashed_embedder(texts, 32)
    with pytest.raises(EmbeddingError) as caught:
        provider_for(openai_server, dimensions=64).embed(["hello"])
    assert caught.value.transient is False
    assert "vectors of 32 dimensions, expected 64" in str(caught.value)
    assert openai_server.count("embeddings") == 1


def test_a_known_model_answering_with_another_size_is_permanent(openai_server):
    # text-embedding-3-small makes 1536 dimensions; the stand-in answers 64 when not asked.
    provider = provider_for(openai_server, model="text-embedding-3-small", dimensions=None)
    assert provider.dims == 1536
    with pytest.raises(EmbeddingError) as caught:
        provider.embed(["hello"])
    assert caught.value.transient is False
    assert "expected 1536" in str(caught.value)
    assert "dimensions" not in openai_server.requests[0].body


def test_an_unknown_models_size_is_learnt_once_and_then_held(openai_server):
    provider = provider_for(openai_server, dimensions=None)
    assert provider.dims == 64
    assert openai_server.count("embeddings") == 1
    assert provider.embed(["a"]).shape == (1, 64)
    openai_server.embedder = lambda texts, dims: hashed_embedder(texts, 32)
    with pytest.raises(EmbeddingError, match="vectors of 32 dimensions, expected 64"):
        provider.embed(["a"])


def test_an_answer_missing_an_embedding_is_permanent(openai_server):
    openai_server.embedder = lambda texts, dims: hashed_embedder(texts, dims)[:-1]
    with pytest.raises(EmbeddingError) as caught:
        provider_for(openai_server).embed(["a", "b"])
    assert caught.value.transient is False
    assert "1 embeddings for 2 inputs" in str(caught.value)


def test_count_tokens_is_an_upper_bound_in_bytes():
    provider = OpenAIEmbeddingProvider(client=OpenAIClient(base_url="http://x/v1"), model="m")
    assert provider.count_tokens("hello world") == 11 + 2
    assert provider.count_tokens("Grüße") == len("Grüße".encode()) + 2


def test_get_provider_builds_the_configured_provider_once(settings, openai_server):
    settings.CRM_PIPELINE_SEARCH = {
        "provider": "openai",
        "openai_base_url": openai_server.base_url,
        "openai_model": "nomic-embed-text",
        "openai_dimensions": 24,
        "batch_size": 3,
    }
    provider = get_provider()
    assert isinstance(provider, OpenAIEmbeddingProvider)
    assert get_provider() is provider
    assert (provider.model, provider.dims, provider.batch_size) == ("nomic-embed-text", 24, 3)
    assert provider.embed(["hello"]).shape == (1, 24)
    settings.CRM_PIPELINE_SEARCH = {**settings.CRM_PIPELINE_SEARCH, "openai_dimensions": 16}
    assert get_provider() is not provider
    assert get_provider().dims == 16
