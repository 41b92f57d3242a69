"""Event times and recurring-event expansion into Calendar v3 instances (via dateutil.rrule)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr

# Without timeMax, Google expands an endless series only so far ahead.
EXPANSION_HORIZON = timedelta(days=730)
MAX_INSTANCES = 2500


def zone(name: str | None, fallback: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or fallback)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(fallback)


def instant(when: dict, tz: ZoneInfo) -> datetime:
    """An event time ({"date"} or {"dateTime"}) as an aware datetime; dates start at midnight."""
    if "dateTime" in when:
        return datetime.fromisoformat(when["dateTime"])
    return datetime.combine(date.fromisoformat(when["date"]), time(), tz)


def overlaps(
    event: dict, tz: ZoneInfo, time_min: datetime | None, time_max: datetime | None
) -> bool:
    """Google's window test: end after timeMin and start before timeMax (both exclusive)."""
    # A cancelled instance keeps only the slot it cancels; other cancelled stubs have no times.
    first = event.get("start") or event.get("originalStartTime")
    if first is None:
        return True
    start = instant(first, tz)
    end = instant(event.get("end", first), tz)
    return (time_min is None or end > time_min) and (time_max is None or start < time_max)


def expand(
    master: dict, calendar_tz: str, time_min: datetime | None, time_max: datetime | None
) -> list[dict]:
    """The instances of a recurring event overlapping the window, as Google returns them."""
    all_day = "date" in master["start"]
    tz = zone(master["start"].get("timeZone"), calendar_tz)
    first = instant(master["start"], tz).astimezone(tz)
    duration = instant(master["end"], tz) - instant(master["start"], tz)
    horizon = time_max or datetime.now(UTC) + EXPANSION_HORIZON
    instances: list[dict] = []
    for start in _occurrences(master["recurrence"], first, all_day, tz):
        if start >= horizon or len(instances) >= MAX_INSTANCES:
            break
        if time_min is None or start + duration > time_min:
            instances.append(_instance(master, start, duration, all_day, tz))
    return instances


def _occurrences(
    rules: list[str], first: datetime, all_day: bool, tz: ZoneInfo
) -> Iterator[datetime]:
    # All-day rules carry date-only UNTIL/EXDATE values, which dateutil accepts only with a
    # naive DTSTART; timed rules keep the zone so wall-clock times survive DST changes.
    dtstart = first.replace(tzinfo=None) if all_day else first
    try:
        rule_set = rrulestr("\n".join(rules), dtstart=dtstart, forceset=True)
    except (ValueError, TypeError):
        yield first
        return
    for occurrence in rule_set:
        yield occurrence.replace(tzinfo=tz) if all_day else occurrence.astimezone(tz)


def _instance(
    master: dict, start: datetime, duration: timedelta, all_day: bool, tz: ZoneInfo
) -> dict:
    instance = {key: value for key, value in master.items() if key != "recurrence"}
    if all_day:
        suffix = start.strftime("%Y%m%d")
        instance["start"] = {"date": start.date().isoformat()}
        instance["end"] = {"date": (start + duration).date().isoformat()}
    else:
        suffix = start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        instance["start"] = {"dateTime": start.isoformat(), "timeZone": tz.key}
        instance["end"] = {"dateTime": (start + duration).isoformat(), "timeZone": tz.key}
    instance["id"] = f"{master['id']}_{suffix}"
    instance["recurringEventId"] = master["id"]
    instance["originalStartTime"] = dict(instance["start"])
    return instance
