"""Calendar v3 `events` resources to ParsedInteraction (meetings), time zones done right."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from jobs.normalization.gmail import MAX_BODY_CHARS
from jobs.normalization.html import html_to_text
from jobs.normalization.text import db_safe
from jobs.normalization.types import NormalizationError, ParsedInteraction

_LOOKS_LIKE_HTML = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9]*[\s/>]|/[a-zA-Z]|!--)")
_RESPONSES = frozenset({"needsAction", "declined", "tentative", "accepted"})


def parse_calendar_event(
    event: dict,
    *,
    calendar_id: str,
    own_addresses: frozenset[str],
    fetched_at: datetime,
    default_tz: str = "UTC",
    max_body_chars: int = MAX_BODY_CHARS,
) -> ParsedInteraction:
    """Normalize one event; raises NormalizationError only when it has no id.

    All-day events happen at midnight of their date in the event's zone (start.timeZone, else
    default_tz, which should be the calendar's zone). Cancelled events are kept and marked.
    """
    if not isinstance(event, dict):
        raise NormalizationError(f"event is a {type(event).__name__}, not an object")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise NormalizationError("event has no id")

    start = _dict(event.get("start"))
    end = _dict(event.get("end"))
    original = _dict(event.get("originalStartTime"))
    zone_name = _zone_name(start.get("timeZone")) or _zone_name(default_tz) or "UTC"
    zone = ZoneInfo(zone_name)
    all_day = isinstance(start.get("date"), str) and not start.get("dateTime")

    start_at, start_text = _moment(start, zone)
    end_at, end_text = _moment(end, zone)
    original_at, original_text = _moment(original, zone)
    occurred_at = start_at or original_at
    estimated = occurred_at is None
    if occurred_at is None:
        occurred_at = _utc(fetched_at)
    duration_s = None
    if start_at is not None and end_at is not None:
        if all_day and start_text and end_text and len(end_text) == len(start_text) == 10:
            # the end date is exclusive; counting days keeps DST days at 24 h
            days = (date.fromisoformat(end_text) - date.fromisoformat(start_text)).days
            duration_s = days * 86_400
        else:
            duration_s = int((end_at - start_at).total_seconds())

    status = _str(event.get("status")) or "confirmed"
    own = {address.lower() for address in own_addresses}
    organizer = _dict(event.get("organizer"))
    organizer_email = _str(organizer.get("email")).lower()
    listed = event.get("attendees")
    attendees = [
        _attendee(attendee, own)
        for attendee in (listed if isinstance(listed, list) else [])
        if isinstance(attendee, dict) and _str(attendee.get("email"))
    ]
    recurrence = event.get("recurrence")
    recurring_event_id = _str(event.get("recurringEventId"))
    metadata: dict[str, Any] = {
        "start": start_text,
        "end": end_text,
        "all_day": all_day,
        "timezone": zone_name,
        "duration_s": duration_s,
        "location": _str(event.get("location")) or None,
        "meeting_link": _meeting_link(event),
        "organizer": {
            "email": organizer_email,
            "name": _str(organizer.get("displayName")),
            "self": organizer.get("self") is True or organizer_email in own,
        }
        if organizer_email
        else None,
        "attendees": attendees,
        "recurrence": [r for r in recurrence if isinstance(r, str)]
        if isinstance(recurrence, list)
        else [],
        "recurring_event_id": recurring_event_id or None,
        "original_start": original_text,
        "calendar_id": calendar_id,
        "status": status,
        "cancelled": status == "cancelled",
        "ical_uid": _str(event.get("iCalUID")) or None,
        "html_link": _str(event.get("htmlLink")) or None,
        "updated": _str(event.get("updated")) or None,
    }
    return ParsedInteraction(
        source="calendar",
        source_id=f"{calendar_id}/{event_id}",
        kind="meeting",
        occurred_at=occurred_at,
        occurred_at_estimated=estimated,
        subject=db_safe(_str(event.get("summary")).strip()),
        body_text=_description(_str(event.get("description")), max_body_chars),
        thread_id=recurring_event_id,
        direction="",
        metadata=_json_safe(metadata),
    )


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


@lru_cache(maxsize=256)
def _zone_name(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None
    return name


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _moment(value: dict, zone: ZoneInfo) -> tuple[datetime | None, str | None]:
    """The UTC instant of an EventDateTime and its ISO text (a date for all-day values)."""
    try:
        return _parse_moment(value, zone)
    except (ValueError, OverflowError):
        return None, None


def _parse_moment(value: dict, zone: ZoneInfo) -> tuple[datetime | None, str | None]:
    date_time = value.get("dateTime")
    if isinstance(date_time, str) and date_time:
        parsed = datetime.fromisoformat(date_time)
        if parsed.tzinfo is None:
            own_zone = _zone_name(value.get("timeZone"))
            parsed = parsed.replace(tzinfo=ZoneInfo(own_zone) if own_zone else zone)
        moment = parsed.astimezone(UTC)
        return moment, moment.isoformat()
    day = value.get("date")
    if isinstance(day, str) and day:
        parsed_day = date.fromisoformat(day)
        # midnight where the event happens, not UTC midnight
        return datetime.combine(parsed_day, time(), zone).astimezone(UTC), parsed_day.isoformat()
    return None, None


def _attendee(attendee: dict, own: set[str]) -> dict[str, Any]:
    email = _str(attendee.get("email")).strip().lower()
    response = _str(attendee.get("responseStatus"))
    return {
        "email": email,
        "name": _str(attendee.get("displayName")),
        "response_status": response if response in _RESPONSES else "needsAction",
        "organizer": attendee.get("organizer") is True,
        "optional": attendee.get("optional") is True,
        "self": attendee.get("self") is True or email in own,
    }


def _meeting_link(event: dict) -> str | None:
    link = _str(event.get("hangoutLink"))
    if link:
        return link
    entry_points = _dict(event.get("conferenceData")).get("entryPoints")
    if isinstance(entry_points, list):
        for entry in entry_points:
            if isinstance(entry, dict) and entry.get("entryPointType") == "video":
                uri = _str(entry.get("uri"))
                if uri:
                    return uri
    return None


def _description(text: str, max_chars: int) -> str:
    if _LOOKS_LIKE_HTML.search(text):
        text = html_to_text(text, max_chars=max_chars)
    else:
        text = text.replace("\r\n", "\n").strip()
    return db_safe(text[:max_chars])


def _json_safe(value: Any) -> Any:
    # event fields are free text from any organizer: NULs and lone surrogates must not reach jsonb
    if isinstance(value, str):
        return db_safe(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value
