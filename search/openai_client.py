"""A small client for OpenAI-compatible HTTP APIs (OpenAI, Ollama, vLLM, LM Studio): one JSON POST
with a timeout, a bearer key from the environment, and retries that honour Retry-After.

Generic on purpose: the embedding provider posts to ``embeddings``, the insights LLM to
``chat/completions``. Standard library only (urllib), so it runs in any worker.

Errors say whether a retry may help (`OpenAIClientError.transient`): 429, 408, 409, 5xx,
timeouts and connection errors are transient and retried here with full-jitter exponential
backoff, never sooner than the server's Retry-After (seconds or an HTTP date); other statuses
(400, 401, 403, 404, 422, ...) and a success whose body is not a JSON object are permanent and
raised at once. When a wait would exceed `backoff_cap_s` or pass the caller's deadline, the
client stops and raises a transient error carrying `retry_after_s`, so the job engine retries
later instead of a worker sleeping.

The key is read from the named environment variable at each call, sent only in the
Authorization header, and never logged nor put in an exception's text (a server echoing it in
its error message is redacted).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.conf import SearchConfig

logger = logging.getLogger(__name__)

# Statuses worth sending again: rate limit, request timeout, conflict (OpenAI answers 409 on
# a transient engine conflict), and every server-side error.
TRANSIENT_STATUSES = frozenset({408, 409, 429})
# Key-looking words in a server's message ("Incorrect API key provided: sk-proj-ab***yz").
_KEYISH = re.compile(r"\b(sk|rk|pk)-[\w*.-]{4,}")
_MAX_MESSAGE_CHARS = 300


class OpenAIClientError(Exception):
    """A request failed; `transient` says whether a later retry may succeed, `status` is the
    HTTP status (None for timeouts and connection errors), `retry_after_s` the server's
    Retry-After or the wait the client declined to make."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after_s = retry_after_s


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent or
    unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True, slots=True)
class OpenAIClient:
    """POSTs JSON to ``{base_url}/{path}``; see the module docstring for errors and retries.

    `max_retries` counts the attempts after the first. Thread-safe: it holds no connection
    state (one urllib request per attempt).
    """

    base_url: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 30.0
    max_retries: int = 3
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 30.0

    @classmethod
    def from_config(cls, config: SearchConfig) -> OpenAIClient:
        """The client for the endpoint configured in CRM_PIPELINE_SEARCH."""
        return cls(
            base_url=config.openai_base_url,
            api_key_env=config.openai_api_key_env,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            backoff_base_s=config.backoff_base_s,
            backoff_cap_s=config.backoff_cap_s,
        )

    def url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"

    def post_json(
        self, path: str, body: dict[str, Any], *, deadline: float | None = None
    ) -> dict[str, Any]:
        """The JSON object the server answers to ``POST {base_url}/{path}`` with `body`.

        `deadline` (a time.monotonic() value, e.g. a job's ctx.deadline): no backoff wait that
        would end after it; the transient error is raised instead.
        Raises OpenAIClientError.
        """
        data = json.dumps(body).encode()
        url = self.url(path)
        attempt = 0
        while True:
            try:
                return self._attempt(url, data)
            except OpenAIClientError as exc:
                if not exc.transient:
                    raise
                if attempt >= self.max_retries:
                    if attempt == 0:
                        raise
                    raise OpenAIClientError(
                        f"{exc} (after {attempt + 1} attempts)",
                        transient=True,
                        status=exc.status,
                        retry_after_s=exc.retry_after_s,
                    ) from exc
                attempt += 1
                delay = self._delay(attempt, exc.retry_after_s)
                if delay > self.backoff_cap_s or (
                    deadline is not None and time.monotonic() + delay > deadline
                ):
                    raise OpenAIClientError(
                        f"{exc} (not waiting {delay:.1f} s for a retry here)",
                        transient=True,
                        status=exc.status,
                        retry_after_s=delay,
                    ) from exc
                logger.warning(
                    "POST %s: %s; retry %d/%d in %.2f s", url, exc, attempt, self.max_retries, delay
                )
                time.sleep(delay)

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        """Full jitter over an exponential, capped; never before the server's Retry-After
        (which may exceed the cap: the caller then declines to wait)."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1))
        delay = random.uniform(0, ceiling)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "crm-pipeline",
        }
        key = os.environ.get(self.api_key_env, "").strip()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _attempt(self, url: str, data: bytes) -> dict[str, Any]:
        request = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            message = self._server_message(exc)
            transient = status in TRANSIENT_STATUSES or status >= 500
            raise OpenAIClientError(
                f"POST {url}: HTTP {status}{': ' + message if message else ''}",
                transient=transient,
                status=status,
                retry_after_s=retry_after,
            ) from None
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, TimeoutError):
                what = f"no answer within {self.timeout_s:g} s"
            else:
                what = f"connection failed ({type(reason).__name__}: {reason})"
            raise OpenAIClientError(self._redact(f"POST {url}: {what}"), transient=True) from None
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise OpenAIClientError(
                f"POST {url}: the answer is not a JSON object ({raw[:80]!r})", transient=False
            )
        return payload

    def _server_message(self, exc: urllib.error.HTTPError) -> str:
        """The error message of an OpenAI-style error body, shortened and redacted."""
        try:
            raw = exc.read()
        except (OSError, http.client.HTTPException):
            return ""
        try:
            body = json.loads(raw)
        except ValueError:
            text = raw.decode("utf-8", "replace").strip()
        else:
            error = body.get("error") if isinstance(body, dict) else None
            if isinstance(error, dict):
                text = str(error.get("message") or error.get("code") or "")
            elif isinstance(error, str):
                text = error
            else:
                text = json.dumps(body)
        text = " ".join(text.split())
        if len(text) > _MAX_MESSAGE_CHARS:
            text = text[:_MAX_MESSAGE_CHARS] + "..."
        return self._redact(text)

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env, "").strip()
        if key:
            text = text.replace(key, "[redacted]")
        return _KEYISH.sub("[redacted]", text)
