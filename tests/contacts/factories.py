"""Raw Gmail and Calendar payloads for contacts tests, stored and normalized the real way."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from contacts.selectors import batch_interaction_ids
from contacts.services.extract import ExtractReport, contacts_extract
from jobs.models import GoogleAccount, RawEvent
from jobs.normalization.services import raw_events_normalize

OWN = "ada@example.com"
OWN_ALIAS = "ada.l@alias.example"
BASE = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


def account_for(user, email: str = OWN, aliases=(OWN_ALIAS,)) -> GoogleAccount:
    return GoogleAccount.objects.create(user=user, email=email, addresses=[email, *aliases])


def _header_list(value) -> str:
    return ", ".join(value) if isinstance(value, (list, tuple)) else value


def gmail(
    *,
    frm: str,
    to=(),
    cc=(),
    bcc=(),
    reply_to=None,
    subject: str = "Hello",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
    labels=("INBOX",),
    at: datetime | None = None,
    gmail_id: str | None = None,
) -> dict:
    """A Gmail users.messages resource (format=full) with these headers."""
    n = next(_ids)
    at = at or BASE + timedelta(hours=n)
    items = {"From": frm, "Subject": subject, "Message-ID": message_id or f"<m{n}@mail.example>"}
    for name, value in (("To", to), ("Cc", cc), ("Bcc", bcc), ("Reply-To", reply_to)):
        if value:
            items[name] = _header_list(value)
    items.update(headers or {})
    return {
        "id": gmail_id or f"g{n:06d}",
        "threadId": f"t{n}",
        "labelIds": list(labels),
        "snippet": subject,
        "internalDate": str(int(at.timestamp() * 1000)),
        "payload": {
            "mimeType": "text/plain",
            "headers": [{"name": k, "value": v} for k, v in items.items()],
            "body": {"data": "SGVsbG8="},
        },
    }


def event(
    *,
    organizer: dict | None = None,
    attendees=(),
    summary: str = "Meeting",
    status: str = "confirmed",
    at: datetime | None = None,
    calendar_id: str = OWN,
) -> dict:
    """A Calendar v3 event; attendees as dicts {"email", "displayName", "responseStatus", ...}."""
    n = next(_ids)
    at = at or BASE + timedelta(hours=n)
    return {
        "id": f"e{n:06d}",
        "_calendarId": calendar_id,
        "status": status,
        "summary": summary,
        "start": {"dateTime": at.isoformat()},
        "end": {"dateTime": (at + timedelta(hours=1)).isoformat()},
        "organizer": organizer or {"email": OWN, "self": True},
        "attendees": list(attendees),
    }


def ingest(user, *, mails=(), events=(), batch_id: uuid.UUID | None = None) -> uuid.UUID:
    """Store the payloads as one batch's pending raw events and normalize them."""
    batch_id = batch_id or uuid.uuid4()
    rows = [
        RawEvent(user=user, provider="gmail", source_id=m["id"], payload=m, batch_id=batch_id)
        for m in mails
    ] + [
        RawEvent(
            user=user,
            provider="calendar",
            source_id=f"{e['_calendarId']}/{e['id']}",
            payload=e,
            batch_id=batch_id,
        )
        for e in events
    ]
    RawEvent.objects.bulk_create(rows)
    for provider in ("gmail", "calendar"):
        raw_events_normalize(user_id=user.pk, provider=provider, batch_id=batch_id)
    return batch_id


def extract(user, batch_id: uuid.UUID, **kwargs) -> ExtractReport:
    ids = batch_interaction_ids(user_id=user.pk, batch_id=batch_id)
    return contacts_extract(user_id=user.pk, interaction_ids=ids, **kwargs)
