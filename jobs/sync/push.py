"""Push-triggered sync: notifications become incremental syncs, bursts coalesce, and the
periodic poll becomes a safety net while push is healthy.

A notification (jobs.google.push_views, already verified) asks for a sync of one account
(Gmail: every active account of the mailbox it names; Calendar: the channel's account and
calendar). The account's lane decides what that means:

- no active sync: one is enqueued;
- one is queued or retrying: it has not read Google yet, so it will see the change; nothing
  more (Calendar: the queued run is widened to this calendar if it was narrowed to others);
- one is running: it may have read past the change already, so the channel row is flagged
  (`follow_up`) under a row lock; when the chain ends, `push_sync_finished` reads the flag
  under the same lock and starts one more sync (a chain of its own), whatever the number of
  notifications: a burst costs one run plus at most one follow-up;
- one is running and has already looked for flags (`checked_job_id`): its end is a matter of
  milliseconds, but the request does not wait for it (a push answers at once): the view
  answers 503 with Retry-After and Google delivers the notification again, by when the run
  has ended and the redelivery enqueues a new sync.

A Gmail notification whose historyId is not newer than the stored cursor does nothing. The
notified historyId is the sender's word: when a chain ends, one above the cursor the chain read
to is brought down to it, so a huge (forged or broken) one cannot hide later unannounced mail.

Push health (jobs.google.push.push_health) also learns from the syncs: a run that finds a
change no notification announced marks the channel (`unannounced_at`), and a notification
that covers it clears the mark; one older than push_missed_grace_s means push is failing, and
the account is polled at the normal interval again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest, Now
from django.utils import timezone

from jobs.config import PipelineConfig, get_config
from jobs.context import JobContext, Metrics
from jobs.dispatcher import get_processor
from jobs.enqueue import enqueue
from jobs.errors import PermanentError, TransientError
from jobs.google.client import calendar_service, execute
from jobs.google.pacer import QuotaDeferred
from jobs.google.push import (
    Fence,
    NoFence,
    calendar_channel_due,
    calendar_channel_open,
    calendar_channel_stop,
    calendar_push_enabled,
    gmail_push_enabled,
    gmail_watch,
    gmail_watch_due,
    gmail_watch_stop,
    push_health,
)
from jobs.models import (
    GoogleAccount,
    GoogleAccountStatus,
    Job,
    Provider,
    PushChannel,
    PushChannelStatus,
    SyncState,
)
from jobs.models.job import ACTIVE_STATUSES, CLAIMABLE_STATUSES
from jobs.sync.calendar import selected_calendars
from jobs.sync.common import SYNC_KINDS, SyncResult

logger = logging.getLogger(__name__)

RENEW_KIND = "push_renew"


class PushBusy(Exception):
    """The account's sync could not take the notification now: Google should send it again."""


# -- Notifications ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """What one notification did for one account: "enqueued" (a new sync), "coalesced" (a sync
    that has not read Google yet will see it), "follow-up" (the running sync will start one
    more when it ends), "stale" (the historyId is not newer than the cursor)."""

    account_id: int
    outcome: str
    job_id: int | None = None


def push_gmail_notified(*, email: str, history_id: int) -> list[PushOutcome]:
    """A Gmail notification for the mailbox `email`: each active account of that mailbox (one
    per CRM user who connected it) gets its incremental sync, unless it is up to date."""
    accounts = GoogleAccount.objects.filter(
        email=email.strip().lower(), status=GoogleAccountStatus.ACTIVE
    ).order_by("pk")
    return [_sync_requested(account, Provider.GMAIL, history_id=history_id) for account in accounts]


def push_calendar_notified(*, channel: PushChannel) -> PushOutcome | None:
    """A Calendar notification on a verified channel: an incremental sync of that calendar.
    None when the channel's account no longer syncs."""
    account = GoogleAccount.objects.filter(
        pk=channel.account_id, status=GoogleAccountStatus.ACTIVE
    ).first()
    if account is None:
        return None
    return _sync_requested(account, Provider.CALENDAR, channel=channel)


def _sync_requested(
    account: GoogleAccount,
    provider: str,
    *,
    history_id: int | None = None,
    channel: PushChannel | None = None,
) -> PushOutcome:
    outcome, job = _request_once(account, provider, history_id=history_id, channel=channel)
    if outcome == "late":
        # The running sync has looked for notifications already and is ending: Google sends
        # the notification again (503 + Retry-After), and by then the lane is free.
        raise PushBusy(f"account {account.pk}: sync job {job.pk if job else '?'} is finishing")
    return PushOutcome(account.pk, outcome, job.pk if job else None)


def _request_once(
    account: GoogleAccount,
    provider: str,
    *,
    history_id: int | None,
    channel: PushChannel | None,
) -> tuple[str, Job | None]:
    with transaction.atomic():
        rows = _locked_rows(account, provider, channel)
        if history_id is not None:
            _note_gmail(rows, history_id)
            cursor = (
                SyncState.objects.filter(account=account, provider=Provider.GMAIL, resource_id="")
                .values_list("cursor", flat=True)
                .first()
            )
            if cursor and cursor.isdigit() and history_id <= int(cursor):
                return "stale", None
        else:
            _note_calendar(rows)
        payload: dict[str, Any] = {"account_id": account.pk}
        if channel is not None:
            payload["calendar_ids"] = [channel.resource_id]
        kind = SYNC_KINDS[provider]
        lane = get_processor(kind).lane_key(user_id=account.user_id, payload=payload)
        # A burst finds the lane taken: one read instead of an insert the index refuses.
        job = Job.objects.filter(dedupe_key=lane, status__in=ACTIVE_STATUSES).first()
        if job is None:
            job = enqueue(kind, user=account.user_id, payload=payload)
            if not getattr(job, "deduplicated", False):
                return "enqueued", job
        if job.status in CLAIMABLE_STATUSES:
            if channel is not None:
                calendar_job_widen(job=job, calendar_ids=[channel.resource_id])
            return "coalesced", job
        checked = bool(rows) and all(
            row.checked_job_id == job.pk and row.checked_attempt == job.attempts for row in rows
        )
        if not rows or checked:
            return "late", job
        PushChannel.objects.filter(pk__in=[row.pk for row in rows]).update(follow_up=True)
        return "follow-up", job


def _locked_rows(
    account: GoogleAccount, provider: str, channel: PushChannel | None
) -> list[PushChannel]:
    """The rows a notification writes, locked: the Gmail watch, or the calendar's channel."""
    rows = PushChannel.objects.select_for_update()
    if channel is not None:
        return list(rows.filter(pk=channel.pk))
    return list(rows.filter(account=account, provider=provider))


_NOTIFIED_FIELDS = [
    "notified_at",
    "notifications",
    "notified_history_id",
    "unannounced_at",
    "unannounced_history_id",
]
_CHECKED_FIELDS = [
    "follow_up",
    "notified_history_id",
    "checked_job_id",
    "checked_attempt",
    "unannounced_at",
    "unannounced_history_id",
]


def _note_gmail(rows: list[PushChannel], history_id: int) -> None:
    """Count the notification on the (locked) Gmail watch row; clear an unannounced change it
    covers."""
    for row in rows:
        row.notified_at = timezone.now()
        row.notifications += 1
        row.notified_history_id = max(row.notified_history_id or 0, history_id)
        if row.unannounced_history_id is not None and history_id >= row.unannounced_history_id:
            row.unannounced_at = row.unannounced_history_id = None
        # One plain UPDATE: a burst writes this row a hundred times a second.
        PushChannel.objects.filter(pk=row.pk).update(
            **{name: getattr(row, name) for name in _NOTIFIED_FIELDS}
        )


def _note_calendar(rows: list[PushChannel]) -> None:
    PushChannel.objects.filter(pk__in=[row.pk for row in rows]).update(
        notified_at=Now(),
        notifications=F("notifications") + 1,
        unannounced_at=None,
        updated_at=Now(),
    )


def calendar_job_widen(*, job: Job, calendar_ids: Iterable[str] | None) -> bool:
    """Let a calendar_sync that has not started yet also cover `calendar_ids` (None: every
    selected calendar). True when its payload changed."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().filter(pk=job.pk, status__in=CLAIMABLE_STATUSES)
        current = locked.first()
        if current is None:
            return False
        narrowed = list(current.payload.get("calendar_ids") or [])
        if not narrowed:
            return False  # already every calendar
        wanted = [] if calendar_ids is None else sorted({*narrowed, *calendar_ids})
        if wanted == narrowed:
            return False
        current.payload = {**current.payload, "calendar_ids": wanted}
        current.save(update_fields=["payload", "updated_at"])
        job.payload = current.payload
        return True


# -- The end of a sync chain ------------------------------------------------------------------


def push_sync_finished(
    ctx: JobContext, *, account: GoogleAccount, provider: str, result: SyncResult
) -> dict[str, Any] | None:
    """Called when a sync chain ends (its last run, before it succeeds): the payload of one more
    sync when notifications arrived that this chain may have missed, else None; and the
    unannounced changes it found, for push health.

    Under the lock of the account's channel rows, in the run's fenced transaction: a
    notification either flagged a row before this look (and gets its follow-up) or sees this
    run marked as having looked (and waits for it to end, then enqueues a sync itself).
    """
    with transaction.atomic():
        ctx.fence()
        rows = list(
            PushChannel.objects.select_for_update()
            .filter(account=account, provider=provider)
            .order_by("pk")
        )
        if not rows:
            return None
        now = timezone.now()
        follow_up: dict[str, Any] | None = None
        if provider == Provider.GMAIL:
            follow_up = _gmail_finished(account, rows, result, now)
            if follow_up is None:
                _gmail_notified_capped(account=account, row=rows[0])
        else:
            follow_up = _calendar_finished(account, rows, result, now)
        for row in rows:
            row.follow_up = False
            if follow_up is None:
                row.checked_job_id, row.checked_attempt = ctx.job.pk, ctx.job.attempts
        PushChannel.objects.bulk_update(
            rows,
            _CHECKED_FIELDS,
        )
        return follow_up


def _gmail_finished(
    account: GoogleAccount, rows: list[PushChannel], result: SyncResult, now: datetime
) -> dict[str, Any] | None:
    row = rows[0]
    added = result.changes.get("addedHistoryId")
    if (
        added
        and row.history_id is not None
        and added > row.history_id
        and (row.notified_history_id or 0) < added
    ):
        # Mail the watch should have announced and did not (yet): push health keeps an eye.
        row.unannounced_history_id = max(row.unannounced_history_id or 0, added)
        row.unannounced_at = row.unannounced_at or now
    if not row.follow_up:
        return None
    cursor = (
        SyncState.objects.filter(account=account, provider=Provider.GMAIL, resource_id="")
        .values_list("cursor", flat=True)
        .first()
    )
    notified = row.notified_history_id or 0
    if cursor and cursor.isdigit() and notified <= int(cursor):
        return None  # this chain read past every notified change
    return {"account_id": account.pk}


def _gmail_notified_capped(*, account: GoogleAccount, row: PushChannel) -> None:
    """Bring a notified historyId above the cursor this chain read to down to that cursor.

    Called when the chain ends without a follow-up: every genuine notification it was told of
    is at or below what it read (Gmail's historyIds only grow), so a higher one is forged or
    broken, and left standing it would make every later change look announced."""
    cursor = (
        SyncState.objects.filter(account=account, provider=Provider.GMAIL, resource_id="")
        .values_list("cursor", flat=True)
        .first()
    )
    if cursor and cursor.isdigit() and (row.notified_history_id or 0) > int(cursor):
        row.notified_history_id = int(cursor)


def _calendar_finished(
    account: GoogleAccount, rows: list[PushChannel], result: SyncResult, now: datetime
) -> dict[str, Any] | None:
    changed: dict[str, datetime] = result.changes.get("calendars", {})
    for row in rows:
        stamp = changed.get(row.resource_id)
        if (
            stamp is not None
            and row.status == PushChannelStatus.ACTIVE
            and row.watched_at is not None
            and stamp > row.watched_at
            and (row.notified_at is None or row.notified_at < stamp)
        ):
            row.unannounced_at = row.unannounced_at or now
    calendars = sorted({row.resource_id for row in rows if row.follow_up})
    if not calendars:
        return None
    return {"account_id": account.pk, "calendar_ids": calendars}


# -- Renewal ----------------------------------------------------------------------------------


@dataclass
class RenewResult:
    gmail: str = ""  # "watched" | "stopped" | "" (nothing to do)
    channels_opened: int = 0
    channels_stopped: int = 0
    failures: list[str] = field(default_factory=list)

    def metrics(self) -> Metrics:
        done = int(self.gmail == "watched") + self.channels_opened
        return Metrics(items_fetched=done, items_inserted=done, details=self.details())

    def details(self) -> dict[str, Any]:
        return {
            "gmail": self.gmail,
            "channelsOpened": self.channels_opened,
            "channelsStopped": self.channels_stopped,
            "failures": self.failures,
        }


def push_reconcile(
    *,
    account: GoogleAccount,
    control: Fence | None = None,
    config: PipelineConfig | None = None,
    result: RenewResult | None = None,
) -> RenewResult:
    """Bring the account's push subscriptions to what the configuration wants: a Gmail watch
    made or renewed when due (gmail_watch_due), a channel on each selected calendar opened or
    renewed when due (the old one stopped after the new one is up), channels of calendars no
    longer selected and subscriptions push no longer wants stopped.

    A refusal (a topic Gmail may not publish to, a calendar that cannot be watched) is recorded
    on its row and in the result, and the rest proceeds; a transient error is raised once
    everything else is done, so the job retries (what is done is not done again).
    """
    config = config or get_config()
    control = control or NoFence()
    # The caller's result when given: it can read the work done so far (ctx.track).
    result = result if result is not None else RenewResult()
    transient: list[TransientError] = []

    def attempt(what: str, call: Any) -> Any:
        try:
            return call()
        except QuotaDeferred:
            raise  # the job yields its worker (push_renew): the rest is done in its continuation
        except TransientError as exc:
            transient.append(exc)
        except PermanentError as exc:
            result.failures.append(f"{what}: {exc}")
        return None

    watch = PushChannel.objects.filter(account=account, provider=Provider.GMAIL).first()
    if gmail_push_enabled(config):
        if gmail_watch_due(watch, config=config) is not None and attempt(
            "users.watch", lambda: gmail_watch(account=account, control=control, config=config)
        ):
            result.gmail = "watched"
    elif watch is not None and attempt(
        "users.stop", lambda: gmail_watch_stop(account=account, control=control) or True
    ):
        result.gmail = "stopped"
    channels = list(
        PushChannel.objects.filter(account=account, provider=Provider.CALENDAR).order_by("pk")
    )
    if not calendar_push_enabled(config) and not channels:
        if transient:
            raise transient[0]
        return result
    service = calendar_service(account)
    try:
        wanted: list[str] = []
        if calendar_push_enabled(config):
            entries = _calendar_list(account, service)
            wanted = selected_calendars(entries, config.calendar_selection)
        for calendar_id in wanted:
            control_checkpoint(control)
            mine = [row for row in channels if row.resource_id == calendar_id]
            live = [row for row in mine if row.status == PushChannelStatus.ACTIVE]
            current = live[-1] if live else None
            if calendar_channel_due(current, config=config) is None:
                continue
            opened = attempt(
                f"events.watch {calendar_id}",
                lambda calendar_id=calendar_id: calendar_channel_open(
                    account=account,
                    calendar_id=calendar_id,
                    service=service,
                    control=control,
                    config=config,
                ),
            )
            if opened is None:
                continue
            result.channels_opened += 1
            for old in mine:
                if old.status == PushChannelStatus.FAILED:
                    continue  # deleted when the new one was opened
                _carry_over(old, opened)
                if attempt(
                    f"channels.stop {old.channel_id}",
                    lambda old=old: calendar_channel_stop(
                        account=account, row=old, service=service, control=control
                    ),
                ):
                    result.channels_stopped += 1
        for row in channels:
            if row.resource_id not in wanted and attempt(
                f"channels.stop {row.channel_id}",
                lambda row=row: calendar_channel_stop(
                    account=account, row=row, service=service, control=control
                ),
            ):
                result.channels_stopped += 1
    finally:
        service.close()
    if transient:
        raise transient[0]
    return result


def control_checkpoint(control: Fence) -> None:
    checkpoint = getattr(control, "checkpoint", None)
    if checkpoint is not None:
        checkpoint()


def _carry_over(old: PushChannel, new: PushChannel) -> None:
    """A renewed channel keeps what push health knows of its calendar."""
    if old.unannounced_at is not None or old.notified_at is not None:
        PushChannel.objects.filter(pk=new.pk).update(
            unannounced_at=old.unannounced_at,
            notified_at=Greatest(F("notified_at"), old.notified_at)
            if old.notified_at
            else F("notified_at"),
        )


def _calendar_list(account: GoogleAccount, service: Any) -> list[dict]:
    entries: list[dict] = []
    page_token = None
    while True:
        page = execute(
            service.calendarList().list(maxResults=250, pageToken=page_token), account=account
        )
        entries += page.get("items", [])
        page_token = page.get("nextPageToken")
        if not page_token:
            return entries


def push_renew_enqueue(*, account: GoogleAccount) -> Job | None:
    """A push_renew job for the account (its lane holds one), when push is configured or the
    account still has subscriptions to stop."""
    config = get_config()
    wanted = gmail_push_enabled(config) or calendar_push_enabled(config)
    if not wanted and not PushChannel.objects.filter(account=account).exists():
        return None
    return enqueue(RENEW_KIND, user=account.user_id, payload={"account_id": account.pk})


def push_renew_due(*, now: datetime | None = None) -> int:
    """The renewal schedule: a push_renew job for every active account whose watch or channels
    are missing, failed, due (daily Gmail renewal, an expiry within push_renew_before_expiry_s)
    or no longer wanted. Returns how many jobs it started."""
    config = get_config()
    now = now or timezone.now()
    rows: dict[int, list[PushChannel]] = {}
    for row in PushChannel.objects.filter(account__status=GoogleAccountStatus.ACTIVE):
        rows.setdefault(row.account_id, []).append(row)
    started = 0
    for account in GoogleAccount.objects.filter(status=GoogleAccountStatus.ACTIVE).order_by("pk"):
        if _renewal_due(rows.get(account.pk, []), config=config, now=now):
            job = push_renew_enqueue(account=account)
            started += int(job is not None and not getattr(job, "deduplicated", False))
    logger.info("push renewal: %d job(s) started", started)
    return started


def _renewal_due(rows: list[PushChannel], *, config: PipelineConfig, now: datetime) -> bool:
    watches = [row for row in rows if row.provider == Provider.GMAIL]
    channels = [row for row in rows if row.provider == Provider.CALENDAR]
    if gmail_push_enabled(config):
        if gmail_watch_due(watches[0] if watches else None, config=config, now=now):
            return True
    elif watches:
        return True
    if not calendar_push_enabled(config):
        return bool(channels)
    if not channels:
        return True
    newest: dict[str, PushChannel] = {}
    for row in sorted(channels, key=lambda row: row.pk):
        if row.status == PushChannelStatus.ACTIVE or row.resource_id not in newest:
            newest[row.resource_id] = row
    return any(
        calendar_channel_due(row, config=config, now=now) is not None for row in newest.values()
    )


# -- The safety net ---------------------------------------------------------------------------


def poll_providers(
    *,
    accounts: list[GoogleAccount],
    config: PipelineConfig | None = None,
    now: datetime | None = None,
) -> dict[int, list[str]]:
    """Account id -> the providers the periodic sync polls now: every provider whose push is
    off or failing, and a provider whose push is healthy once its last sync is older than
    push_poll_minutes (the safety net)."""
    config = config or get_config()
    now = now or timezone.now()
    health = push_health(accounts=accounts, config=config, now=now)
    last = last_synced(accounts=accounts)
    safety = timedelta(minutes=config.push_poll_minutes)
    # The periodic sync runs every periodic_sync_minutes: a sync a little younger than the
    # safety interval at this tick would be much older at the next one.
    margin = timedelta(minutes=config.periodic_sync_minutes) / 2
    due: dict[int, list[str]] = {}
    for account in accounts:
        due[account.pk] = [
            provider
            for provider in (Provider.GMAIL, Provider.CALENDAR)
            if not health[account.pk][provider].healthy
            or (synced := last.get((account.pk, provider))) is None
            or synced <= now - safety + margin
        ]
    return due


def last_synced(*, accounts: list[GoogleAccount]) -> dict[tuple[int, str], datetime]:
    """(account id, provider) -> the oldest last_synced_at of its sync states (Calendar: of
    its calendars), backfill rows aside."""
    found: dict[tuple[int, str], datetime] = {}
    states = (
        SyncState.objects.filter(account__in=accounts, last_synced_at__isnull=False)
        .exclude(resource_id__startswith="backfill")
        .values_list("account_id", "provider", "last_synced_at")
    )
    for account_id, provider, synced in states:
        key = (account_id, provider)
        if synced is not None:
            found[key] = min(found.get(key, synced), synced)
    return found
