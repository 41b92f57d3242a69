"""The emulator's own endpoints around push: the JWKS its push tokens verify against, and the
injection of a new message or event (which the mailbox's watch or channels then announce)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from google_emulator import errors
from google_emulator.generator import make_message
from google_emulator.routing import Call, Reply, Route, json_reply
from google_emulator.state import Mailbox

JWKS_PATH = "/oauth2/v3/certs"
INJECT = "/emulator/inject"


def certs(call: Call) -> Reply:
    """The public key of the emulator's push tokens, as Google serves its own."""
    hub = call.emulator.push
    return json_reply(
        hub.signer.jwks(),
        headers={"Cache-Control": f"public, max-age={hub.jwks_max_age_s}, must-revalidate"},
    )


def _body(call: Call) -> dict:
    try:
        body = json.loads(call.body or b"{}")
    except ValueError:
        raise errors.invalid_argument("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise errors.invalid_argument("the body must be a JSON object")
    return body


def _account(call: Call, body: dict) -> Mailbox:
    try:
        return call.emulator.accounts.get(body.get("account") or None)
    except KeyError:
        raise errors.not_found(f"no account {body.get('account')} on this emulator") from None


def inject_message(call: Call) -> Reply:
    """Deliver a new message to an account now: {"account", "from", "subject", "body",
    "labelIds"} (all optional; the default account, a stranger, INBOX). Answers its id and the
    mailbox's historyId."""
    body = _body(call)
    mailbox = _account(call, body)
    now = datetime.now(UTC).replace(microsecond=0)
    labels = body.get("labelIds") or ["INBOX", "UNREAD"]
    message = make_message(
        from_=str(body.get("from") or "Sam Carter <sam.carter@client.example>"),
        to=mailbox.email,
        subject=str(body.get("subject") or f"Injected at {now.isoformat()}"),
        body=str(body.get("body") or "A message injected into the emulator."),
        date=now,
        labels=[str(label) for label in labels],
    )
    message_id = mailbox.add_message(message.raw, label_ids=message.label_ids)
    return json_reply(
        {"account": mailbox.email, "id": message_id, "historyId": str(mailbox.history_id)}
    )


def inject_event(call: Call) -> Reply:
    """Create an event on an account's calendar now: {"account", "calendarId" ("primary"),
    "summary", "start" (ISO 8601; default in an hour), "minutes" (30), "attendees" (addresses)}.
    Answers the event's id and calendar."""
    body = _body(call)
    mailbox = _account(call, body)
    calendar_id = str(body.get("calendarId") or "primary")
    try:
        calendar = mailbox.calendar(calendar_id)
    except (KeyError, StopIteration):
        raise errors.not_found(f"no calendar {calendar_id} for {mailbox.email}") from None
    try:
        start = (
            datetime.fromisoformat(str(body["start"]))
            if body.get("start")
            else datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=1)
        )
    except ValueError:
        raise errors.invalid_argument("start must be an ISO 8601 date and time") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    end = start + timedelta(minutes=int(body.get("minutes") or 30))
    attendees = [str(a) for a in body.get("attendees") or ["sam.carter@client.example"]]
    event = mailbox.add_event(
        calendar.id,
        {
            "summary": str(body.get("summary") or "Injected meeting"),
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": end.isoformat()},
            "organizer": {"email": mailbox.email, "self": True},
            "creator": {"email": mailbox.email, "self": True},
            "attendees": [
                {"email": mailbox.email, "self": True, "responseStatus": "accepted"},
                *({"email": a, "responseStatus": "needsAction"} for a in attendees),
            ],
        },
    )
    return json_reply({"account": mailbox.email, "calendarId": calendar.id, "id": event["id"]})


ROUTES = [
    Route("emulator.certs", "GET", JWKS_PATH, certs, "emulator"),
    Route(
        "emulator.inject.message", "POST", "/emulator/inject/message", inject_message, "emulator"
    ),
    Route("emulator.inject.event", "POST", "/emulator/inject/event", inject_event, "emulator"),
]
