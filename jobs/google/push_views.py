"""The push endpoints Google calls: /google/push/gmail/ (Cloud Pub/Sub) and
/google/push/calendar/ (Calendar notification channels).

Both answer at once and never sync in the request: a notification only enqueues (or coalesces
into) an incremental sync (jobs.sync.push). What the answers mean to Google:

- Pub/Sub treats 102/200/201/202/204 as an acknowledgement and redelivers anything else with
  back-off until the message's retention (7 days by default) or a dead-letter policy ends it.
  So: 204 once a notification is handled, and also when there is nothing to do (a mailbox no
  account syncs, a historyId already read): redelivery could not change that. 401/403 for a
  token that does not verify (when our audience setting is wrong, the backlog is delivered
  once it is fixed); 400 for a verified push whose body is not a Pub/Sub envelope of a Gmail
  notification (it can never succeed: give the subscription a dead-letter topic, see
  docs/OPERATIONS.md); 503 when we cannot take it now (Google's keys unreachable, a sync
  still finishing), which Pub/Sub retries.
- Calendar retries 500/502/503/504 only; 204 on success, 403 for an unknown channel or a wrong
  token (the same answer for both), 400 without the channel headers.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from jobs.config import get_config
from jobs.google.push import calendar_push_enabled, gmail_push_enabled, push_channel_verified
from jobs.google.push_auth import PushAuthError, pubsub_token_verify
from jobs.sync.push import PushBusy, push_calendar_notified, push_gmail_notified

logger = logging.getLogger(__name__)

# Seconds Google is asked to wait before delivering a notification again (503).
RETRY_AFTER_S = 10


class MalformedPush(ValueError):
    """The body is not a Pub/Sub push envelope of a Gmail notification."""


def gmail_notification(body: bytes) -> tuple[str, int]:
    """(emailAddress, historyId) of a Pub/Sub push envelope around a Gmail notification:
    {"message": {"data": base64(JSON {"emailAddress", "historyId"}), "messageId", ...},
    "subscription": ...}. MalformedPush otherwise."""
    try:
        envelope = json.loads(body)
        data = envelope["message"]["data"]
        decoded: Any = json.loads(base64.b64decode(data, validate=False))
        email = decoded["emailAddress"]
        history = decoded["historyId"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise MalformedPush(f"not a Pub/Sub envelope of a Gmail notification ({exc!r})") from None
    if not isinstance(email, str) or "@" not in email:
        raise MalformedPush("emailAddress is not an address")
    text = str(history) if isinstance(history, int | str) and not isinstance(history, bool) else ""
    if not text.isdigit() or len(text) > 18:
        raise MalformedPush("historyId is not a number")
    return email.strip().lower(), int(text)


def _answer(status: int, text: str = "", **headers: str) -> HttpResponse:
    response = HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@csrf_exempt
@require_POST
def gmail_push(request: HttpRequest) -> HttpResponse:
    """A Pub/Sub push of a Gmail notification: verify its OIDC token, enqueue the syncs."""
    config = get_config()
    if not gmail_push_enabled(config):
        return _answer(404, "Gmail push is not configured")
    try:
        pubsub_token_verify(request.headers.get("Authorization"), config=config)
    except PushAuthError as exc:
        # Never the token itself.
        logger.warning("Gmail push refused (%s): %s", exc.status, exc)
        if exc.status == 503:
            return _answer(503, str(exc), Retry_After=str(RETRY_AFTER_S))
        extra = {"WWW_Authenticate": 'Bearer error="invalid_token"'} if exc.status == 401 else {}
        return _answer(exc.status, "forbidden" if exc.status == 403 else "unauthorized", **extra)
    try:
        email, history_id = gmail_notification(request.body)
    except MalformedPush as exc:
        logger.warning("Gmail push with a malformed body: %s", exc)
        return _answer(400, str(exc))
    try:
        outcomes = push_gmail_notified(email=email, history_id=history_id)
    except PushBusy as exc:
        logger.info("Gmail push deferred: %s", exc)
        return _answer(503, "busy", Retry_After=str(RETRY_AFTER_S))
    if not outcomes:
        logger.info("Gmail push for a mailbox no active account syncs; acknowledged")
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def calendar_push(request: HttpRequest) -> HttpResponse:
    """A Calendar channel notification: check its channel id and token, enqueue the sync of
    that calendar (the initial "sync" message only confirms the channel)."""
    if not calendar_push_enabled(get_config()):
        return _answer(404, "Calendar push is not configured")
    channel_id = request.headers.get("X-Goog-Channel-ID", "")
    state = request.headers.get("X-Goog-Resource-State", "")
    if not channel_id or not state:
        return _answer(400, "not a Calendar notification")
    channel = push_channel_verified(
        channel_id=channel_id, token=request.headers.get("X-Goog-Channel-Token", "")
    )
    resource = request.headers.get("X-Goog-Resource-ID", "")
    if channel is None or (
        channel.google_resource_id and resource and resource != channel.google_resource_id
    ):
        logger.warning("Calendar push refused: unknown channel or wrong token")
        return _answer(403, "forbidden")
    if state != "exists" and state != "not_exists":
        return HttpResponse(status=204)  # "sync": the channel works; nothing changed yet
    try:
        push_calendar_notified(channel=channel)
    except PushBusy as exc:
        logger.info("Calendar push deferred: %s", exc)
        return _answer(503, "busy", Retry_After=str(RETRY_AFTER_S))
    return HttpResponse(status=204)
