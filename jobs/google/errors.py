"""Google API errors mapped to job outcomes: retry later, fail now, or restart from the window."""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime
from typing import Any

import httplib2
from django.utils import timezone
from googleapiclient.errors import HttpError

from jobs.errors import PermanentError, TransientError

RATE_LIMIT_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded"})
# Daily quota: retrying within minutes cannot help; come back much later.
DAILY_LIMIT_REASONS = frozenset({"dailyLimitExceeded", "quotaExceeded"})
DAILY_LIMIT_RETRY_AFTER_S = 3600.0
# (method id, status) pairs meaning "your stored cursor is no longer valid".
CURSOR_EXPIRED = frozenset({("gmail.users.history.list", 404), ("calendar.events.list", 410)})
# Transport failures worth another attempt (timeouts, resets, DNS hiccups).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (OSError, httplib2.HttpLib2Error)


class CursorExpired(Exception):
    """The stored historyId / syncToken is no longer valid: fall back to the time window."""

    def __init__(self, message: str, *, method_id: str = "") -> None:
        super().__init__(message)
        self.method_id = method_id


def status_of(exc: HttpError) -> int:
    return int(getattr(exc.resp, "status", 0) or 0)


def error_reason(exc: HttpError) -> str:
    """The first `errors[].reason` of Google's JSON error body ("" when absent)."""
    detail = _error_body(exc)
    errors = detail.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("reason") or "")
    return ""


def error_message(exc: HttpError) -> str:
    message = _error_body(exc).get("message")
    return str(message) if message else (getattr(exc.resp, "reason", "") or "")


def retry_after(exc: HttpError) -> float | None:
    """Seconds from the response's Retry-After header (delta-seconds or an HTTP date)."""
    value = exc.resp.get("retry-after") if exc.resp is not None else None
    return parse_retry_after(value)


def parse_retry_after(value: Any) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def is_retryable(exc: HttpError) -> bool:
    """429, 5xx, 408 and 403 rate limits: worth sending again."""
    status = status_of(exc)
    if status in (408, 429) or status >= 500:
        return True
    return status == 403 and error_reason(exc) in RATE_LIMIT_REASONS


def map_http_error(exc: HttpError, method_id: str) -> Exception:
    """The exception a job should see for a Google HttpError on `method_id`.

    Messages carry the method, status, reason and Google's message; never URLs, headers or tokens.
    """
    status = status_of(exc)
    reason = error_reason(exc)
    text = f"{method_id or 'google'}: HTTP {status}" + (f" {reason}" if reason else "")
    message = error_message(exc)
    if message:
        text += f": {message}"
    if (method_id, status) in CURSOR_EXPIRED:
        return CursorExpired(text, method_id=method_id)
    if status == 403 and reason in DAILY_LIMIT_REASONS:
        return TransientError(text, retry_after=retry_after(exc) or DAILY_LIMIT_RETRY_AFTER_S)
    if is_retryable(exc):
        return TransientError(text, retry_after=retry_after(exc))
    return PermanentError(text)


def map_transport_error(exc: BaseException, method_id: str) -> TransientError:
    kind = "timed out" if isinstance(exc, TimeoutError) else "failed"
    return TransientError(f"{method_id or 'google'}: request {kind} ({type(exc).__name__})")


def _error_body(exc: HttpError) -> dict[str, Any]:
    content = exc.content
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    try:
        data = json.loads(content or "")
    except (TypeError, ValueError):
        return {}
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}
