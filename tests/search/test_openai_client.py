"""search.openai_client: the generic client the embedding provider and the insights LLM share,
against the OpenAI-compatible stand-in server (real HTTP)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest

from search.conf import SearchConfig
from search.openai_client import OpenAIClient, OpenAIClientError, parse_retry_after

KEY_ENV = "CRM_PIPELINE_TEST_OPENAI_KEY"


def client_for(server, **options) -> OpenAIClient:
    defaults = {"api_key_env": KEY_ENV, "timeout_s": 5.0, "backoff_base_s": 0.01}
    return OpenAIClient(base_url=server.base_url, **{**defaults, **options})


def test_it_posts_any_path_and_returns_the_json_answer(openai_server):
    openai_server.chat_handler = lambda request: json.dumps({"echo": request["messages"][0]})
    answer = client_for(openai_server).post_json(
        "/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    content = json.loads(answer["choices"][0]["message"]["content"])
    assert content == {"echo": {"role": "user", "content": "hi"}}
    assert openai_server.requests[0].path == "/v1/chat/completions"
    assert openai_server.requests[0].headers["Content-Type"] == "application/json"


def test_no_key_in_the_environment_sends_no_authorization(openai_server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    client_for(openai_server).post_json("embeddings", {"model": "nomic-embed-text", "input": "x"})
    assert "Authorization" not in openai_server.requests[0].headers


def test_a_bad_request_is_permanent_with_the_servers_message(openai_server):
    with pytest.raises(OpenAIClientError) as caught:
        client_for(openai_server).post_json("embeddings", {"model": "nomic-embed-text"})
    error = caught.value
    assert (error.transient, error.status) == (False, 400)
    assert "HTTP 400: input must be a string or a list of strings" in str(error)
    assert openai_server.count("embeddings") == 1


def test_a_retry_after_as_an_http_date_is_honoured(openai_server):
    when = datetime.now(UTC) + timedelta(seconds=2)
    openai_server.fail_next(1, status=503, retry_after=format_datetime(when, usegmt=True))
    started = time.monotonic()
    client_for(openai_server, backoff_base_s=0.0).post_json(
        "embeddings", {"model": "nomic-embed-text", "input": "x"}
    )
    waited = time.monotonic() - started
    # An HTTP date has whole seconds: 2 s from now, truncated, is more than 1 s away.
    assert waited >= 1.0, f"retried after {waited:.3f} s"
    assert openai_server.count("embeddings") == 2


def test_a_retry_after_longer_than_the_cap_is_handed_back_not_slept(openai_server):
    openai_server.fail_next(1, status=429, retry_after="120")
    started = time.monotonic()
    with pytest.raises(OpenAIClientError) as caught:
        client_for(openai_server, backoff_cap_s=30).post_json(
            "embeddings", {"model": "nomic-embed-text", "input": "x"}
        )
    assert time.monotonic() - started < 5
    assert caught.value.transient is True and caught.value.status == 429
    assert caught.value.retry_after_s == 120.0
    assert openai_server.count("embeddings") == 1


def test_no_wait_runs_past_the_callers_deadline(openai_server):
    openai_server.fail_next(1, status=429, retry_after="3")
    with pytest.raises(OpenAIClientError) as caught:
        client_for(openai_server).post_json(
            "embeddings",
            {"model": "nomic-embed-text", "input": "x"},
            deadline=time.monotonic() + 1.0,
        )
    assert caught.value.transient is True and caught.value.retry_after_s == 3.0
    assert openai_server.count("embeddings") == 1


def test_a_refused_connection_is_transient_and_retried():
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as probe:
        port = probe.server_address[1]
    client = OpenAIClient(base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff_base_s=0)
    with pytest.raises(OpenAIClientError) as caught:
        client.post_json("embeddings", {"input": "x"})
    assert caught.value.transient is True and caught.value.status is None
    assert "connection failed (ConnectionRefusedError" in str(caught.value)


class _EchoKeyHandler(BaseHTTPRequestHandler):
    """A server whose 401 echoes the key it got, as some proxies do."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": f"key {key} is not valid"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_key_echoed_by_the_server_is_redacted(monkeypatch):
    secret = "local-secret-value-42"
    monkeypatch.setenv(KEY_ENV, secret)
    with ThreadingHTTPServer(("127.0.0.1", 0), _EchoKeyHandler) as server:
        Thread(target=server.serve_forever, daemon=True).start()
        client = OpenAIClient(
            base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key_env=KEY_ENV
        )
        with pytest.raises(OpenAIClientError) as caught:
            client.post_json("embeddings", {"input": "x"})
        server.shutdown()
    assert caught.value.transient is False
    assert str(caught.value).endswith("HTTP 401: key [redacted] is not valid")
    assert secret not in str(caught.value)


def test_parse_retry_after_reads_seconds_and_http_dates():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    assert 85 <= (parse_retry_after(later) or 0) <= 90
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_from_config_takes_the_search_settings():
    config = SearchConfig(
        openai_base_url="http://localhost:11434/v1/",
        openai_api_key_env="OLLAMA_KEY",
        timeout_s=7,
        max_retries=1,
        backoff_base_s=0.5,
        backoff_cap_s=4,
    )
    client = OpenAIClient.from_config(config)
    assert client == OpenAIClient("http://localhost:11434/v1/", "OLLAMA_KEY", 7, 1, 0.5, 4)
    assert client.url("/embeddings") == "http://localhost:11434/v1/embeddings"
