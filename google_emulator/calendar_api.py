"""Calendar v3 handlers: calendarList.list and events.list (paging, expansion, sync tokens),
events.watch and channels.stop (notification channels, google_emulator.push)."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from google_emulator import errors
from google_emulator.params import Params, decode_token, encode_token
from google_emulator.recurrence import expand, instant, overlaps, zone
from google_emulator.routing import Call, Reply, Route, json_reply
from google_emulator.state import Calendar, now_rfc3339

# Parameters Google refuses next to a syncToken (the window is fixed by the first full sync).
_NOT_WITH_SYNC_TOKEN = (
    "timeMin",
    "timeMax",
    "orderBy",
    "q",
    "iCalUID",
    "updatedMin",
    "privateExtendedProperty",
    "sharedExtendedProperty",
)


def list_calendars(call: Call) -> Reply:
    assert call.mailbox is not None, "the server authenticates every calendar route"
    entries = [calendar.list_entry() for calendar in call.mailbox.calendars()]
    max_results = call.params.get_int("maxResults", 100, 250)
    token = call.params.get("pageToken")
    offset = int(decode_token(token).get("o", 0)) if token else 0
    reply: dict = {
        "kind": "calendar#calendarList",
        "etag": f'"p{len(entries)}"',
        "items": entries[offset : offset + max_results],
    }
    if offset + max_results < len(entries):
        reply["nextPageToken"] = encode_token({"o": offset + max_results})
    return json_reply(reply)


def list_events(call: Call) -> Reply:
    assert call.mailbox is not None, "the server authenticates every calendar route"
    try:
        calendar = call.mailbox.calendar(call.args["calendarId"])
    except (KeyError, StopIteration):
        raise errors.ApiError(404, "notFound", "Not Found") from None
    params = call.params
    max_results = params.get_int("maxResults", 250, 2500)
    since, upto, offset = _window(calendar, params)
    if since is None:
        items = _full_listing(calendar, params)
    else:
        items = _changes(calendar, params, since, upto)
    reply = _envelope(calendar, items[offset : offset + max_results])
    if offset + max_results < len(items):
        reply["nextPageToken"] = encode_token({"o": offset + max_results, "s": since, "u": upto})
    else:
        reply["nextSyncToken"] = encode_token(
            {"c": calendar.id, "s": upto, "e": calendar.sync_epoch}
        )
    return json_reply(reply)


def _window(calendar: Calendar, params: Params) -> tuple[int | None, int, int]:
    """(changes since, snapshot sequence, offset) from the page or sync token."""
    page_token = params.get("pageToken")
    if page_token:
        state = decode_token(page_token)
        return state.get("s"), int(state.get("u", calendar.sequence)), int(state.get("o", 0))
    sync_token = params.get("syncToken")
    if not sync_token:
        return None, calendar.sequence, 0
    conflicting = [name for name in _NOT_WITH_SYNC_TOKEN if name in params]
    if conflicting:
        raise errors.ApiError(400, "invalid", f"Sync token cannot be used with {conflicting[0]}.")
    try:
        state = decode_token(sync_token, "syncToken")
    except errors.ApiError:
        raise errors.sync_token_expired() from None
    if state.get("c") != calendar.id or state.get("e") != calendar.sync_epoch:
        raise errors.sync_token_expired()
    return int(state["s"]), calendar.sequence, 0


def _time_param(params: Params, name: str) -> datetime | None:
    text = params.get(name)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise errors.ApiError(400, "badRequest", "Bad Request")
    return value


def _full_listing(calendar: Calendar, params: Params) -> list[dict]:
    single = params.get_bool("singleEvents")
    order_by = params.get("orderBy")
    if order_by not in (None, "startTime", "updated"):
        raise errors.invalid_argument(f"Invalid value for orderBy: {order_by}")
    if order_by == "startTime" and not single:
        raise errors.ApiError(
            400, "badRequest", "The requested ordering is not available for the particular query."
        )
    time_min, time_max = _time_param(params, "timeMin"), _time_param(params, "timeMax")
    show_deleted = params.get_bool("showDeleted")
    tz_name = params.get("timeZone") or calendar.time_zone
    tz = zone(tz_name, "UTC")
    events = calendar.events()
    if single:
        events = _expanded(events, tz_name, time_min, time_max)
    items = [
        event
        for event in events
        if _visible(event, single, show_deleted)
        and (
            bool(expand(event, tz_name, time_min, time_max))
            if "recurrence" in event
            else overlaps(event, tz, time_min, time_max)
        )
    ]
    if order_by == "startTime":
        items.sort(key=lambda event: _start_key(event, tz))
    elif order_by == "updated":
        items.sort(key=lambda event: event.get("updated", ""))
    return items


def _start_key(event: dict, tz: ZoneInfo) -> datetime:
    when = event.get("start") or event.get("originalStartTime")
    return instant(when, tz) if when else datetime.min.replace(tzinfo=tz)


def _visible(event: dict, single: bool, show_deleted: bool) -> bool:
    # Google keeps cancelled instances in a non-expanded listing even without showDeleted, so
    # clients can see which occurrences of a series are gone.
    if event.get("status") != "cancelled" or show_deleted:
        return True
    return not single and "recurringEventId" in event


def _expanded(
    events: list[dict], tz_name: str, time_min: datetime | None, time_max: datetime | None
) -> list[dict]:
    """Recurring masters replaced by their instances, modified instances by their exceptions."""
    masters = {event["id"] for event in events if "recurrence" in event}
    overrides = {event["id"]: event for event in events if event.get("recurringEventId") in masters}
    items = []
    for event in events:
        if "recurrence" in event:
            instances = expand(event, tz_name, time_min, time_max)
            items += [overrides.pop(instance["id"], instance) for instance in instances]
        elif event.get("recurringEventId") not in masters:
            items.append(event)
    # An exception whose original slot lies outside the window may have been moved into it.
    return items + list(overrides.values())


def _changes(calendar: Calendar, params: Params, since: int, upto: int) -> list[dict]:
    changed = calendar.changed_since(since, upto)
    if not params.get_bool("singleEvents"):
        return changed
    tz_name = params.get("timeZone") or calendar.time_zone
    return _expanded(changed, tz_name, None, None)


def _envelope(calendar: Calendar, items: list[dict]) -> dict:
    entry = calendar.list_entry()
    return {
        "kind": "calendar#events",
        "etag": f'"p{calendar.sequence}"',
        "summary": calendar.summary,
        "updated": now_rfc3339(),
        "timeZone": calendar.time_zone,
        "accessRole": "owner",
        "defaultReminders": entry["defaultReminders"],
        "items": items,
    }


def _json_body(call: Call) -> dict:
    try:
        body = json.loads(call.body or b"{}")
    except ValueError:
        raise errors.ApiError(400, "parseError", "Parse Error") from None
    if not isinstance(body, dict):
        raise errors.ApiError(400, "parseError", "Parse Error")
    return body


def watch_events(call: Call) -> Reply:
    """events.watch: a notification channel on one calendar of the caller."""
    assert call.mailbox is not None, "the server authenticates every calendar route"
    try:
        calendar = call.mailbox.calendar(call.args["calendarId"])
    except (KeyError, StopIteration):
        raise errors.ApiError(404, "notFound", "Not Found") from None
    reply = call.emulator.push.calendar_watch(call.mailbox.email, calendar.id, _json_body(call))
    return json_reply(reply)


def stop_channel(call: Call) -> Reply:
    """channels.stop: end a channel the caller opened (204, no body)."""
    assert call.mailbox is not None, "the server authenticates every calendar route"
    call.emulator.push.channel_stop(call.mailbox.email, _json_body(call))
    return Reply(204, b"")


ROUTES = [
    Route(
        "calendar.calendarList.list",
        "GET",
        "/calendar/v3/users/me/calendarList",
        list_calendars,
        "calendar",
    ),
    Route(
        "calendar.events.list",
        "GET",
        "/calendar/v3/calendars/{calendarId}/events",
        list_events,
        "calendar",
    ),
    Route(
        "calendar.events.watch",
        "POST",
        "/calendar/v3/calendars/{calendarId}/events/watch",
        watch_events,
        "calendar",
    ),
    Route("calendar.channels.stop", "POST", "/calendar/v3/channels/stop", stop_channel, "calendar"),
]
