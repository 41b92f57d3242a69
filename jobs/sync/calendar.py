"""Calendar sync: per-calendar syncToken increments and windowed passes, paged, capped, resumable.

calendarList.list (paged) gives the calendars; its primary entry's id must be the account's
address (else the run fails permanently, storing nothing: the token opens someone else's
calendar). The calendars are filtered by config.calendar_selection ("all",
"primary" or comma-separated calendar ids). Each calendar has its own SyncState
(resource_id = calendar id). events.list runs with showDeleted and singleEvents; without a
syncToken (first sync, `full`, or a 410) it lists the window of calendar_window_past_days /
calendar_window_future_days around now, and the nextSyncToken of its last page becomes the
cursor. A run stores at most calendar_max_events_per_run events, pausing calendar_pause_s every
calendar_pause_every_items; an unfinished listing keeps its page token and parameters
(page_token / pass_query) and the next run continues it. Every page is stored with the state
that points past it in one transaction. A calendar whose events.list fails permanently (403,
404) is recorded in its state's `failures` with the error and skipped, so the calendars after
it still sync; it is tried again every sync_failed_retry_every_s, up to
sync_failed_max_attempts. A quota wait longer than quota_yield_after_s while other jobs wait for
a worker stops the run before that call (jobs.google.pacer.deferring): what is stored stays with
its page token or syncToken, and the continuation (`more`, due once the quota frees, covering
only the calendars not finished; still `full` if it stopped before the reset) goes on from there.

Raw payload convention (read by normalize_calendar): RawEvent(provider="calendar",
source_id=f"{calendar_id}/{event_id}") holds the events resource exactly as fetched plus keys
of ours: "_calendarId" (the calendar it came from: the id parse_calendar_event wants) and
"_calendarTimeZone" (the listing's timeZone: where an all-day event's midnight is);
occurred_at is its start (all-day: midnight UTC of the date; cancelled instances: their
originalStartTime). A cancelled event arrives as a stub (id, status "cancelled", maybe
recurringEventId / originalStartTime); it is merged into the stored payload (jsonb ||), so the
row keeps the meeting's details with "status": "cancelled", and goes back to `pending`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from django.utils import timezone
from googleapiclient.discovery import Resource

from jobs.config import PipelineConfig, get_config
from jobs.errors import PermanentError
from jobs.google.client import calendar_service, execute
from jobs.google.errors import CursorExpired
from jobs.google.pacer import QuotaDeferred, deferring
from jobs.models import GoogleAccount, Provider, SyncState
from jobs.models.raw_event import source_id_too_long
from jobs.normalization.types import CALENDAR_ID_KEY, CALENDAR_TIME_ZONE_KEY
from jobs.sync.common import (
    NoDeadline,
    RunControl,
    SyncResult,
    check_mailbox,
    failure_due,
    failure_record,
    fenced,
    others_waiting,
    service_for,
)
from jobs.sync.raw_events import RawItem, UpsertCounts, raw_events_upsert
from jobs.sync.windows import (
    CalendarWindow,
    backfill_extended,
    backfill_horizon,
    backfill_needed,
    calendar_window,
)

logger = logging.getLogger(__name__)

EVENTS_PAGE_SIZE = 250
CALENDAR_LIST_PAGE_SIZE = 250


def calendar_sync(
    *,
    account: GoogleAccount,
    batch_id: uuid.UUID,
    full: bool = False,
    control: RunControl | None = None,
    service: Resource | None = None,
    result: SyncResult | None = None,
    calendar_ids: Sequence[str] = (),
) -> SyncResult:
    """One Calendar sync run over the selected calendars; `more` when the cap or deadline hit.

    `full` forgets every calendar's syncToken and unfinished listing first, so this run and its
    continuations (which pass full=False) relist the window like a first sync. `calendar_ids`
    (a push notification's calendars) narrows the run to those of the selected calendars.
    """
    return _calendar_run(
        account, batch_id, control, service, result, full=full, calendar_ids=calendar_ids
    )


def _calendar_run(
    account: GoogleAccount,
    batch_id: uuid.UUID,
    control: RunControl | None,
    service: Resource | None,
    result: SyncResult | None,
    *,
    full: bool = False,
    backfill: bool = False,
    calendar_ids: Sequence[str] = (),
) -> SyncResult:
    """One _CalendarRun under the configuration in force, on the caller's service or its own."""
    with service_for(account, service, calendar_service) as calendar:
        run = _CalendarRun(
            account=account,
            batch_id=batch_id,
            config=get_config(),
            control=control or NoDeadline(),
            service=calendar,
            result=result,
            full=full,
            backfill=backfill,
            calendar_ids=calendar_ids,
        )
        return run.execute()


BACKFILL_PREFIX = "backfill:"


def calendar_backfill(
    *,
    account: GoogleAccount,
    batch_id: uuid.UUID,
    control: RunControl | None = None,
    service: Resource | None = None,
    result: SyncResult | None = None,
) -> SyncResult:
    """One run of the Calendar backfill: each selected calendar's events that start between the
    horizon (backfill_horizon_days; 0: everything) and the window's start (now minus
    calendar_window_past_days), at the background priority; `more` while work is left.

    Each calendar's backfill has its own SyncState row (resource_id "backfill:<calendar id>"):
    its listing, its failures, and once done backfill_until (the horizon) and backfill_done_at.
    """
    return _calendar_run(account, batch_id, control, service, result, backfill=True)


def calendar_backfill_pending(
    account: GoogleAccount, *, config: PipelineConfig | None = None
) -> bool:
    """Whether a calendar of the account that has synced still has backfill work: not done (or
    its horizon was raised), unless it failed and its retry is not due yet."""
    config = config or get_config()
    window = calendar_window(config=config)
    if not backfill_needed(boundary=window.time_min, config=config):
        return False
    rows = SyncState.objects.filter(account=account, provider=Provider.CALENDAR)
    synced = set(
        rows.exclude(resource_id__startswith=BACKFILL_PREFIX)
        .exclude(cursor="")
        .values_list("resource_id", flat=True)
    )
    horizon = backfill_horizon(config=config)
    now = timezone.now()
    settled = set()  # done (and not extended), or failed and not due for a retry yet
    for resource_id, until, done_at, failures in rows.filter(
        resource_id__startswith=BACKFILL_PREFIX
    ).values_list("resource_id", "backfill_until", "backfill_done_at", "failures"):
        calendar_id = resource_id.removeprefix(BACKFILL_PREFIX)
        if (done_at is not None and not backfill_extended(until=until, horizon=horizon)) or (
            calendar_id in (failures or {}) and not failure_due(failures, calendar_id, now)
        ):
            settled.add(calendar_id)
    return bool(synced - settled)


def selected_calendars(entries: list[dict], selection: str) -> list[str]:
    """Calendar ids to sync from calendarList entries: "all", "primary" or comma-separated ids
    (where "primary" names the primary calendar)."""
    choice = selection.strip()
    if choice == "all":
        return [entry["id"] for entry in entries]
    wanted = {part.strip() for part in choice.split(",") if part.strip()}
    return [
        entry["id"]
        for entry in entries
        if entry["id"] in wanted or ("primary" in wanted and entry.get("primary"))
    ]


def event_item(event: dict, *, calendar_id: str, time_zone: str = "") -> RawItem:
    """An event as a raw item: source_id "<calendar>/<event>", the payload with _calendarId
    and, when the listing gave one, _calendarTimeZone (all-day events start at the calendar's
    local midnight, and their own start carries no zone)."""
    payload = {**event, CALENDAR_ID_KEY: calendar_id}
    if time_zone:
        payload[CALENDAR_TIME_ZONE_KEY] = time_zone
    return RawItem(
        source_id=f"{calendar_id}/{event['id']}", occurred_at=event_start(event), payload=payload
    )


def event_start(event: dict) -> datetime | None:
    """When an event starts (a cancelled instance: its original start); None for a bare stub."""
    for key in ("start", "originalStartTime"):
        when = event.get(key)
        if not isinstance(when, dict):
            continue
        try:
            if when.get("dateTime"):
                moment = datetime.fromisoformat(str(when["dateTime"]))
                return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            if when.get("date"):
                return datetime.fromisoformat(str(when["date"])).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _updated(event: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(str(event.get("updated") or "").replace("Z", "+00:00"))
    except ValueError:
        return None


def calendar_events_store(
    *, account: GoogleAccount, batch_id: uuid.UUID, items: list[RawItem]
) -> UpsertCounts:
    """Upsert event items; cancellation stubs are merged into what is stored (one statement
    for the live events, one for the cancelled ones)."""
    counts = UpsertCounts()
    cancelled = [item for item in items if item.payload.get("status") == "cancelled"]
    live = [item for item in items if item.payload.get("status") != "cancelled"]
    for group, merge in ((live, False), (cancelled, True)):
        if group:
            counts.add(
                raw_events_upsert(
                    user_id=account.user_id,
                    account_id=account.pk,
                    provider=Provider.CALENDAR,
                    batch_id=batch_id,
                    items=group,
                    merge=merge,
                )
            )
    return counts


class _CalendarRun:
    def __init__(
        self,
        *,
        account: GoogleAccount,
        batch_id: uuid.UUID,
        config: PipelineConfig,
        control: RunControl,
        service: Resource,
        result: SyncResult | None = None,
        backfill: bool = False,
        full: bool = False,
        calendar_ids: Sequence[str] = (),
    ) -> None:
        self.backfill = backfill
        self.calendar_ids = frozenset(calendar_ids)
        self.full = full
        self.priority = "background" if backfill else "normal"
        self.prefix = BACKFILL_PREFIX if backfill else ""
        self.horizon = backfill_horizon(config=config)
        self.account = account
        self.batch_id = batch_id
        self.config = config
        self.control = control
        self.service = service
        # The caller's result when given: it can read the work done so far (ctx.track).
        self.result = result if result is not None else SyncResult()
        self.budget = config.calendar_max_events_per_run
        self.window = calendar_window(config=config)

    def execute(self) -> SyncResult:
        try:
            entries = self._calendar_list()
        except QuotaDeferred as exc:
            # Nothing read or stored yet: the continuation starts this run over once the quota
            # frees, a full sync still as a full sync (its reset comes after the mailbox check).
            self._deferred(exc)
            self.result.more = True
            if self.full:
                self.result.again["full"] = True
            return self.result
        # Before anything is read or stored: is this the account's own calendar?
        primary = next((entry for entry in entries if entry.get("primary")), None)
        check_mailbox(
            self.account, opened=primary["id"] if primary else None, what="primary calendar"
        )
        if self.full:
            # Forget the window syncs' tokens and listings (never the backfill's), after the
            # mailbox check: a wrong token changes nothing.
            with fenced(self.control):
                SyncState.objects.filter(account=self.account, provider=Provider.CALENDAR).exclude(
                    resource_id__startswith=BACKFILL_PREFIX
                ).update(cursor="", page_token="", pass_query="", updated_at=timezone.now())
        calendars = selected_calendars(entries, self.config.calendar_selection)
        if self.calendar_ids:
            calendars = [
                calendar_id for calendar_id in calendars if calendar_id in self.calendar_ids
            ]
        states = {
            state.resource_id.removeprefix(self.prefix): state
            for state in SyncState.objects.filter(
                account=self.account,
                provider=Provider.CALENDAR,
                resource_id__in=[self.prefix + calendar_id for calendar_id in calendars],
            )
        }
        if self.backfill:
            self.result.extra["mode"] = "backfill"
            self.result.extra["horizon"] = self.horizon.isoformat() if self.horizon else None
        finished = 0
        now = timezone.now()
        for index, calendar_id in enumerate(calendars):
            # Saved (created) only by the run's fenced writes.
            state = states.get(calendar_id) or SyncState(
                user_id=self.account.user_id,
                account=self.account,
                provider=Provider.CALENDAR,
                resource_id=self.prefix + calendar_id,
            )
            if self.backfill and state.backfill_done_at is not None:
                if not backfill_extended(until=state.backfill_until, horizon=self.horizon):
                    finished += 1
                    continue
                # The horizon was raised since: list from where the backfill ended.
                state.backfill_done_at = None
                state.pass_query = ""
                state.page_token = ""
            if calendar_id in state.failures and not failure_due(state.failures, calendar_id, now):
                # Failed permanently before: skipped until its retry is due (or for good).
                self.result.extra["calendarsSkipped"] = (
                    self.result.extra.get("calendarsSkipped", 0) + 1
                )
                finished += 1
                continue
            if not self._sync_calendar(calendar_id, state):
                if not self.backfill:
                    # Stopped for its quota, cap or deadline: the continuation covers the
                    # calendars this run has not finished; those before it keep their new
                    # syncTokens and are not listed again meanwhile. (A backfill skips its
                    # finished calendars without a call anyway.)
                    self.result.again["calendar_ids"] = calendars[index:]
                break
            finished += 1
        self.result.more = finished < len(calendars)
        self.result.extra["calendars"] = len(calendars)
        if self.backfill and not self.result.more:
            self.result.extra["backfillDone"] = True
        return self.result

    def _call(self, request: object) -> dict:
        """Run one request. A quota wait longer than quota_yield_after_s while another job
        waits for a worker raises QuotaDeferred (nothing sent); the caller stops there."""
        self.result.requests += 1
        try:
            with deferring(lambda: others_waiting(self.control)):
                return execute(request, account=self.account, priority=self.priority)
        except QuotaDeferred:
            self.result.requests -= 1
            raise

    def _deferred(self, exc: QuotaDeferred) -> None:
        """The run stops for its quota: its continuation is due once the quota frees."""
        self.result.deferred_s = exc.retry_after or 0.0
        self.result.extra["quotaDeferredS"] = round(self.result.deferred_s, 2)

    def _stop_requested(self) -> bool:
        if self.control.deadline_reached():
            self.result.timed_out = True
            return True
        self.control.checkpoint()
        return self.budget <= 0

    def _calendar_list(self) -> list[dict]:
        entries: list[dict] = []
        page_token = None
        while True:
            page = self._call(
                self.service.calendarList().list(
                    maxResults=CALENDAR_LIST_PAGE_SIZE, pageToken=page_token
                )
            )
            entries += page.get("items", [])
            page_token = page.get("nextPageToken")
            if not page_token:
                return entries

    def _sync_calendar(self, calendar_id: str, state: SyncState) -> bool:
        """Page through one calendar's events; False when the run must stop before its end."""
        if not (state.page_token and state.pass_query):
            self._start_listing(state)
        while True:
            if self._stop_requested():
                return False
            params = json.loads(state.pass_query)
            try:
                page = self._call(
                    self.service.events().list(
                        calendarId=calendar_id,
                        showDeleted=True,
                        singleEvents=True,
                        maxResults=min(EVENTS_PAGE_SIZE, self.budget),
                        pageToken=state.page_token or None,
                        **params,
                    )
                )
            except QuotaDeferred as exc:
                # Out of quota while other jobs wait for this worker: stop before the page. The
                # pages stored so far are saved with the page token past them (or the
                # calendar's syncToken), so the continuation lists the next page, not page one.
                self._deferred(exc)
                return False
            except CursorExpired:
                if "syncToken" not in params:
                    raise
                # The syncToken is gone: relist the window (never "nothing").
                self.result.extra["windowFallbacks"] = (
                    self.result.extra.get("windowFallbacks", 0) + 1
                )
                state.cursor = ""
                self._start_listing(state)
                continue
            except PermanentError as exc:
                if state.page_token:
                    # A saved page token Google no longer takes would fail every run: start
                    # this calendar's listing again (the upsert skips what is already stored).
                    logger.warning("calendar %s: a saved page token was refused", calendar_id)
                    self._start_listing(state)
                    continue
                # This calendar cannot be read (403/404): record it, skip it, retry it later;
                # the calendars after it are synced all the same.
                self._calendar_failed(calendar_id, state, exc)
                return True
            events = page.get("items", [])
            if "syncToken" in params:
                self._note_changes(calendar_id, events)
            with fenced(self.control):
                self._store(calendar_id, events, time_zone=page.get("timeZone", ""), state=state)
                state.page_token = page.get("nextPageToken", "")
                if not state.page_token and self.backfill:
                    # The backfill's listing is done: it keeps no syncToken of its own.
                    state.cursor = ""
                    state.backfill_until = self.horizon
                    state.backfill_done_at = timezone.now()
                elif not state.page_token:
                    state.cursor = page.get("nextSyncToken", "")
                    if "timeMin" in params:
                        state.last_full_sync_at = timezone.now()
                    state.pass_query = ""
                state.last_synced_at = timezone.now()
                if calendar_id in state.failures and not state.page_token:
                    state.failures = {k: v for k, v in state.failures.items() if k != calendar_id}
                state.save()
            self._pace(len(events))
            if not state.page_token:
                return True

    def _note_changes(self, calendar_id: str, events: list[dict]) -> None:
        """The newest change an incremental listing found (push health: was it announced?)."""
        stamps = [stamp for event in events if (stamp := _updated(event)) is not None]
        if stamps:
            changed = self.result.changes.setdefault("calendars", {})
            changed[calendar_id] = max(
                [*stamps, *([changed[calendar_id]] if calendar_id in changed else [])]
            )

    def _calendar_failed(self, calendar_id: str, state: SyncState, exc: Exception) -> None:
        failures = dict(state.failures)
        failure_record(failures, calendar_id, str(exc), config=self.config, now=timezone.now())
        logger.warning(
            "account %s: calendar %s failed permanently (%s); skipped, retried later",
            self.account.pk,
            calendar_id,
            exc,
        )
        with fenced(self.control):
            state.failures = failures
            state.page_token = ""
            state.pass_query = ""
            state.save()
        self.result.extra["calendarsFailed"] = self.result.extra.get("calendarsFailed", 0) + 1

    def _start_listing(self, state: SyncState) -> None:
        if self.backfill:
            # Events before the window, back to the horizon (no syncToken: a bounded listing).
            end = state.backfill_until or self.window.time_min
            params = {"timeMax": CalendarWindow(end, end).params()["timeMin"]}
            if self.horizon is not None:
                params["timeMin"] = CalendarWindow(self.horizon, self.horizon).params()["timeMin"]
            state.pass_query = json.dumps(params)
            state.page_token = ""
            return
        params = {"syncToken": state.cursor} if state.cursor else self.window.params()
        state.pass_query = json.dumps(params)
        state.page_token = ""

    def _store(
        self, calendar_id: str, events: list[dict], *, time_zone: str, state: SyncState
    ) -> None:
        self.result.fetched += len(events)
        self.budget -= len(events)
        items = [
            event_item(event, calendar_id=calendar_id, time_zone=time_zone) for event in events
        ]
        counts = calendar_events_store(account=self.account, batch_id=self.batch_id, items=items)
        self.result.counts.add(counts)
        if counts.rejected:
            # Too long to store: the rest of the page is stored; each is recorded on the
            # calendar's state (saved with it) and never retried, since it can never fit.
            failures = dict(state.failures)
            now = timezone.now().isoformat()
            for source_id in counts.rejected:
                previous = failures.get(source_id) or {}
                failures[source_id] = {
                    "error": source_id_too_long(source_id),
                    "attempts": int(previous.get("attempts", 0)) + 1,
                    "firstFailedAt": previous.get("firstFailedAt") or now,
                    "lastFailedAt": now,
                    "retryAt": None,
                }
                logger.warning(
                    "account %s: calendar %s: an event id too long to store was skipped (%s)",
                    self.account.pk,
                    calendar_id,
                    failures[source_id]["error"],
                )
            state.failures = failures
        if self.backfill:
            extra = self.result.extra
            extra["listed"] = extra.get("listed", 0) + len(events)
            starts = [i.occurred_at.astimezone(UTC).isoformat() for i in items if i.occurred_at]
            if starts:
                extra["oldestReached"] = min([*starts, extra.get("oldestReached") or starts[0]])

    def _pace(self, count: int) -> None:
        every = self.config.calendar_pause_every_items
        if every <= 0 or self.config.calendar_pause_s <= 0:
            return
        before = self.result.fetched - count
        pauses = self.result.fetched // every - before // every
        if pauses:
            time.sleep(pauses * self.config.calendar_pause_s)
