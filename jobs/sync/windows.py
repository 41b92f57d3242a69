"""The time windows a sync lists when it has no usable provider cursor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from jobs.config import PipelineConfig, get_config
from jobs.models import Provider
from jobs.sync.raw_events import raw_events_latest_occurred_at


def gmail_window_start(
    *,
    user_id: int,
    account_id: int | None,
    full: bool = False,
    now: datetime | None = None,
    config: PipelineConfig | None = None,
) -> datetime:
    """Where a Gmail listing of one account starts: just before the account's newest stored
    message (never later than now), else the initial window.

    Per account, never per user: a user's second account has its own backlog, older than what
    the first one stored. The overlap re-lists a few minutes already stored (the upsert skips
    them) so mail delivered with a slightly older date is not missed. `full` asks for the
    initial window regardless (then `account_id` may be None).
    """
    config = config or get_config()
    now = now or timezone.now()
    initial = now - timedelta(days=config.initial_window_days)
    if full:
        return initial
    if account_id is None:
        raise ValueError("an incremental window is per account: give account_id")
    latest = raw_events_latest_occurred_at(
        user_id=user_id, provider=Provider.GMAIL, account_id=account_id
    )
    if latest is None:
        return initial
    # Clamped to now: one future-dated message (Takeout dates come from headers) would push
    # `after:` into the future, list nothing, and let the pass adopt the cursor past real mail.
    return min(latest, now) - timedelta(seconds=config.window_overlap_s)


def backfill_horizon(
    *, now: datetime | None = None, config: PipelineConfig | None = None
) -> datetime | None:
    """How far back the backfill goes: backfill_horizon_days before now; None for everything."""
    config = config or get_config()
    if not config.backfill_horizon_days:
        return None
    return (now or timezone.now()) - timedelta(days=config.backfill_horizon_days)


def backfill_needed(
    *, boundary: datetime, now: datetime | None = None, config: PipelineConfig | None = None
) -> bool:
    """Whether anything lies between the horizon and `boundary` (where the first window began)."""
    horizon = backfill_horizon(now=now, config=config)
    return horizon is None or horizon < boundary


def backfill_extended(*, until: datetime | None, horizon: datetime | None) -> bool:
    """Whether a finished backfill (that reached `until`) must go further back: the horizon was
    raised since (by more than a day; the horizon itself moves forward with time)."""
    if until is None:
        return False
    return horizon is None or horizon < until - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CalendarWindow:
    time_min: datetime
    time_max: datetime

    def params(self) -> dict[str, str]:
        return {"timeMin": _rfc3339(self.time_min), "timeMax": _rfc3339(self.time_max)}


def calendar_window(
    *, now: datetime | None = None, config: PipelineConfig | None = None
) -> CalendarWindow:
    """The events a full Calendar listing covers: calendar_window_past/future_days around now.

    Also the fallback when a syncToken expires: an event's occurred_at is its start, not its
    last change, so "since the newest stored event" would miss edits to earlier meetings. The
    full window costs a few list pages, and the upsert stores only what changed.
    """
    config = config or get_config()
    now = (now or timezone.now()).replace(microsecond=0)
    return CalendarWindow(
        time_min=now - timedelta(days=config.calendar_window_past_days),
        time_max=now + timedelta(days=config.calendar_window_future_days),
    )


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
