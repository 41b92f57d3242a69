"""Reconciliation: does the store hold everything Google lists in the sync's window?

Per account (never per user: a user may connect several accounts) and provider, a run lists
what Google holds in the window the sync covers and compares it with the raw events stored for
it: Gmail, the account's own (message ids are a mailbox's); Calendar, the user's rows of the
calendars the account syncs, whichever account stored them (a calendar id is Google's, the same
for every subscriber of a shared calendar, and its event is stored once per user):

- Gmail: users.messages.list with the window pass's query (`after:` the initial window's start,
  minus the excluded folders and categories) and `before:` now minus reconcile_settle_minutes
  (mail that recent may simply not be synced yet).
- Calendar: calendarList.list (the primary calendar must be the account's), then events.list
  per selected calendar that has synced (singleEvents, no deleted events) over the sync's
  window (calendar_window_past_days / calendar_window_future_days); events changed in the last
  reconcile_settle_minutes are left out.

Counted (jobs.models.ReconcileRun): listed (`provider_count`); the rows stored for it in the
window (`stored_count`); missing = listed, not stored for the account, not held by another of the
user's accounts (`elsewhere_count`: listed, stored under another account of the user or under
none, the account that stored it having been deleted; raw events are unique per user, provider
and source id, so an item both accounts list is stored once), not already queued by the
account's sync (`in_flight_count`, its pending ids); extra = stored in the window (an hour's
margin at its ends), not deleted or excluded, but no longer listed: a deletion the sync did not
see. Extras are reported, never deleted. Listed events whose ids are too long to store
(jobs.models.raw_event.source_id_fits; the sync records them in its failures) are left out and
named in the run's detail.

With `fix`, the missing items go through the sync's own store path, in the reconcile job's batch
(Gmail: batched messages.get then the raw-event upsert, excluded labels routed as the sync does;
Calendar: the listed events through calendar_events_store), each chunk in a fenced transaction,
and the job then starts normalization for that batch like a sync. A run never writes the
account's SyncState: the sync's cursors, pending ids and failures stay the sync's own.

Calls are paced as "background" (quota_background_share of the per-user limits), stop at the
job's deadline and at a cancel (a partial run continues in a new job of the same lane), and at
most gmail_max_messages_per_run messages are fetched per run. A quota wait longer than
quota_yield_after_s while other jobs wait for a worker hands the worker back (QuotaYield) where
a continuation loses nothing: before a provider's first call, and between the chunks of a Gmail
fix once one was stored; the run is recorded partial and the job continues once the quota
frees, without spending an attempt. A listing already under way runs to its end.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from googleapiclient.discovery import Resource

from jobs.config import PipelineConfig, get_config
from jobs.context import Metrics
from jobs.enqueue import enqueue
from jobs.errors import DeadlineExceeded, JobCancelled, LeaseLost, PermanentError
from jobs.google.client import calendar_service, execute, gmail_service
from jobs.google.pacer import QuotaDeferred, deferring
from jobs.models import (
    GoogleAccount,
    GoogleAccountStatus,
    Job,
    Provider,
    RawEvent,
    ReconcileRun,
    ReconcileStatus,
    SyncState,
)
from jobs.models.raw_event import source_id_fits
from jobs.normalization.types import DELETED_KEY
from jobs.sync.calendar import (
    BACKFILL_PREFIX,
    CALENDAR_LIST_PAGE_SIZE,
    EVENTS_PAGE_SIZE,
    calendar_events_store,
    event_item,
    selected_calendars,
)
from jobs.sync.common import (
    RunControl,
    SyncResult,
    check_mailbox,
    fenced,
    others_waiting,
    service_for,
)
from jobs.sync.gmail import (
    LIST_PAGE_SIZE,
    excluded_label_ids,
    gmail_messages_store,
    gmail_query_exclusions,
)
from jobs.sync.raw_events import RawItem
from jobs.sync.windows import calendar_window, gmail_window_start

logger = logging.getLogger(__name__)

RECONCILE_KIND = "reconcile"
# Below every incremental sync, like the backfills.
RECONCILE_PRIORITY = 5
# How many missing / extra ids a run keeps.
RECONCILE_SAMPLE = 20
# Stored rows this close to the window's ends are not counted as extra (a date at the boundary
# may fall either side of Google's search).
EDGE_MARGIN = timedelta(hours=1)
# Stored ids are looked up this many at a time.
LOOKUP_CHUNK = 1000
PROVIDERS = (Provider.GMAIL, Provider.CALENDAR)
NORMALIZE_KINDS: dict[str, str] = {
    Provider.GMAIL: "normalize_gmail",
    Provider.CALENDAR: "normalize_calendar",
}


class ReconcileTargetError(LookupError):
    """The account cannot be reconciled (not active); the message says why."""


@dataclass
class Comparison:
    """What a listing found against what is stored."""

    window_start: datetime | None = None
    window_end: datetime | None = None
    listed: list[str] = field(default_factory=list)
    stored: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    elsewhere: int = 0
    in_flight: int = 0
    # Listed, but with an id too long to store (jobs.models.raw_event.source_id_fits).
    unstorable: int = 0
    # The listing stopped before its end (deadline or cancel).
    stopped: bool = False
    # Calendar: the listed events by source id, with their calendar's time zone (for the fix).
    events: dict[str, RawItem] = field(default_factory=dict)


@dataclass
class ReconcileOutcome:
    """Every run of one job, for its metrics (tracked from the start)."""

    runs: list[ReconcileRun] = field(default_factory=list)
    sync: SyncResult = field(default_factory=SyncResult)

    def metrics(self) -> Metrics:
        missing = sum(run.missing_count for run in self.runs)
        fetched = sum(run.fetched_count for run in self.runs)
        return Metrics(
            items_fetched=fetched,
            items_inserted=self.sync.counts.inserted,
            items_skipped=max(fetched - self.sync.counts.inserted - self.sync.counts.updated, 0),
            timed_out=self.sync.timed_out,
            details={
                "providers": {
                    run.provider: {
                        "run": run.pk,
                        "status": run.status,
                        "listed": run.provider_count,
                        "stored": run.stored_count,
                        "missing": run.missing_count,
                        "fetched": run.fetched_count,
                        "extra": run.extra_count,
                    }
                    for run in self.runs
                },
                "missing": missing,
                "requests": self.sync.requests,
                **(
                    {"quotaDeferredS": round(self.sync.deferred_s, 2)}
                    if self.sync.deferred_s
                    else {}
                ),
            },
        )


class QuotaYield:
    """When a reconcile run may hand its worker back on quota (jobs.google.pacer.deferring:
    a wait longer than quota_yield_after_s while another job waits for a worker).

    Only where a continuation loses nothing and still gets further: before the provider's first
    call (nothing done yet), and in a Gmail fix once this run has stored something (what is
    stored is no longer missing). Never in the middle of a listing: a listing is not kept, so
    its continuation would list from the start again, and a listing longer than the quota's
    window would then never finish.
    """

    def __init__(self, control: RunControl, result: SyncResult) -> None:
        self.control = control
        self.result = result
        self.starting = True
        # In a fix: yield once result.fetched has passed this count.
        self.fetched_before: int | None = None

    def __call__(self) -> bool:
        fixing = self.fetched_before is not None and self.result.fetched > self.fetched_before
        return (self.starting or fixing) and others_waiting(self.control)

    def started(self) -> None:
        """The provider's first call was answered: from here the listing runs to its end."""
        self.starting = False

    def fixing(self) -> None:
        """The fix begins: yield between its chunks once one of them stored something."""
        self.fetched_before = self.result.fetched


def _deferred(result: SyncResult, exc: QuotaDeferred) -> None:
    result.deferred_s = exc.retry_after or 0.0


# -- one account and provider ---------------------------------------------------------------


def reconcile_provider(
    *,
    account: GoogleAccount,
    provider: str,
    fix: bool,
    batch_id: uuid.UUID,
    control: RunControl,
    job: Job | None = None,
    outcome: ReconcileOutcome | None = None,
    service: Resource | None = None,
) -> ReconcileRun:
    """Compare one provider of `account` with the store, fetch the missing items when `fix`,
    and record the run (a ReconcileRun, written in a fenced transaction)."""
    if provider not in PROVIDERS:
        raise PermanentError(f"unknown provider {provider!r} (expected gmail or calendar)")
    config = get_config()
    outcome = outcome if outcome is not None else ReconcileOutcome()
    run = ReconcileRun(
        user_id=account.user_id,
        account=account,
        provider=provider,
        job=job,
        fix=fix,
        started_at=timezone.now(),
    )
    build = gmail_service if provider == Provider.GMAIL else calendar_service
    yielding = QuotaYield(control, outcome.sync)
    try:
        skip = _skip_reason(account, provider)
        if skip:
            run.status = ReconcileStatus.SKIPPED
            run.detail = skip
        else:
            with service_for(account, service, build) as api, deferring(yielding):
                compare = _gmail_compare if provider == Provider.GMAIL else _calendar_compare
                found = compare(account, config, control, api, outcome.sync, yielding)
                _record_counts(run, found)
                if found.stopped:
                    run.status = ReconcileStatus.PARTIAL
                    run.detail = "stopped while listing (deadline or cancel); continues"
                elif not found.missing:
                    run.status = ReconcileStatus.GAP if found.extra else ReconcileStatus.OK
                elif not fix:
                    run.status = ReconcileStatus.GAP
                else:
                    yielding.fixing()
                    _fix(run, found, account, config, control, api, batch_id, outcome.sync)
    except QuotaDeferred as exc:
        # Out of quota before the provider's first call while other jobs wait for a worker:
        # nothing was listed; recorded as partial, the job continues once the quota frees.
        _deferred(outcome.sync, exc)
        run.status = ReconcileStatus.PARTIAL
        run.detail = f"waiting {exc.retry_after or 0:.0f}s for quota; continues"
    except (LeaseLost, JobCancelled, DeadlineExceeded):
        raise
    except Exception as exc:
        # A retry may still succeed: record only a final failure (permanent, or the job's last
        # attempt), so a transient 429 does not show as a failed reconciliation.
        final = isinstance(exc, PermanentError) or job is None or job.attempts >= job.max_attempts
        if final:
            run.status = ReconcileStatus.FAILED
            run.detail = str(exc)[:2000]
            run.finished_at = timezone.now()
            with transaction.atomic():
                run.save()
            outcome.runs.append(run)
        raise
    run.finished_at = timezone.now()
    with fenced(control):
        run.save()
    outcome.runs.append(run)
    logger.info(
        "reconcile account %s %s: %s (listed %d, stored %d, missing %d, fetched %d, extra %d)",
        account.pk,
        provider,
        run.status,
        run.provider_count,
        run.stored_count,
        run.missing_count,
        run.fetched_count,
        run.extra_count,
    )
    return run


def _skip_reason(account: GoogleAccount, provider: str) -> str:
    """Why the provider cannot be compared yet (its first sync has not finished), or ""."""
    states = (
        SyncState.objects.filter(account=account, provider=provider)
        .exclude(resource_id="backfill")
        .exclude(resource_id__startswith=BACKFILL_PREFIX)
    )
    if not states.exclude(cursor="").exists():
        return f"the account's first {provider} sync has not finished yet"
    return ""


def _record_counts(run: ReconcileRun, found: Comparison) -> None:
    run.window_start, run.window_end = found.window_start, found.window_end
    run.provider_count = len(found.listed)
    run.stored_count = found.stored
    run.missing_count = len(found.missing)
    run.extra_count = len(found.extra)
    run.elsewhere_count = found.elsewhere
    run.in_flight_count = found.in_flight
    run.missing_sample = found.missing[:RECONCILE_SAMPLE]
    run.extra_sample = found.extra[:RECONCILE_SAMPLE]
    if found.unstorable:
        run.detail = (
            f"{found.unstorable} listed item(s) have ids too long to store (not counted; "
            "the sync records them in its failures)"
        )


def _fix(
    run: ReconcileRun,
    found: Comparison,
    account: GoogleAccount,
    config: PipelineConfig,
    control: RunControl,
    api: Resource,
    batch_id: uuid.UUID,
    result: SyncResult,
) -> None:
    """Fetch and store the missing items through the sync's store path."""
    if run.provider == Provider.GMAIL:
        wanted = found.missing[: config.gmail_max_messages_per_run]
        answered, failures = gmail_messages_store(
            account=account,
            ids=wanted,
            batch_id=batch_id,
            control=control,
            service=api,
            result=result,
            config=config,
        )
        if result.deferred_s:
            run.detail = f"waiting {result.deferred_s:.0f}s for quota"
        run.fetched_count = len(answered)
        run.failed_count = len(failures)
        if failures:
            first = next(iter(failures.items()))
            run.detail = f"{len(failures)} fetch(es) failed, e.g. {first[0]}: {first[1].error}"
        complete = (
            len(wanted) == len(found.missing) and not result.timed_out and not result.deferred_s
        )
    else:
        items = [found.events[source_id] for source_id in found.missing]
        stored = 0
        for start in range(0, len(items), EVENTS_PAGE_SIZE):
            if control.deadline_reached():
                result.timed_out = True
                break
            control.checkpoint()
            chunk = items[start : start + EVENTS_PAGE_SIZE]
            with fenced(control):
                result.counts.add(
                    calendar_events_store(account=account, batch_id=batch_id, items=chunk)
                )
            result.fetched += len(chunk)
            stored += len(chunk)
        run.fetched_count = stored
        complete = stored == len(items)
    if not complete:
        run.status = ReconcileStatus.PARTIAL
        run.detail = (run.detail + "; " if run.detail else "") + "more to fetch; continues"
    elif run.fetched_count + run.failed_count < run.missing_count:
        # Some disappeared between listing and fetching: nothing left to fetch.
        run.status = ReconcileStatus.FIXED if not run.failed_count else ReconcileStatus.GAP
    else:
        run.status = (
            ReconcileStatus.GAP if run.failed_count or found.extra else ReconcileStatus.FIXED
        )


# -- Gmail ----------------------------------------------------------------------------------


def reconcile_gmail_query(*, start: datetime, end: datetime, config: PipelineConfig) -> str:
    """The messages.list `q` of a comparison: the sync's window, minus what was not settled."""
    window = [f"after:{int(start.timestamp())}", f"before:{int(end.timestamp())}"]
    return " ".join([*window, *gmail_query_exclusions(config)])


def _gmail_compare(
    account: GoogleAccount,
    config: PipelineConfig,
    control: RunControl,
    gmail: Resource,
    result: SyncResult,
    yielding: QuotaYield,
) -> Comparison:
    def call(request: object) -> dict:
        return _call(request, account, result)

    profile = call(gmail.users().getProfile(userId="me"))
    yielding.started()
    check_mailbox(account, opened=profile.get("emailAddress"), what="mailbox")
    now = timezone.now()
    start = gmail_window_start(
        user_id=account.user_id, account_id=account.pk, full=True, now=now, config=config
    )
    end = now - timedelta(minutes=config.reconcile_settle_minutes)
    found = Comparison(window_start=start, window_end=end)
    query = reconcile_gmail_query(start=start, end=end, config=config)
    seen: set[str] = set()
    page_token = None
    while True:
        if _stop(control, result):
            found.stopped = True
            break
        page = call(
            gmail.users()
            .messages()
            .list(userId="me", q=query, maxResults=LIST_PAGE_SIZE, pageToken=page_token)
        )
        for ref in page.get("messages", []):
            if ref["id"] not in seen:
                seen.add(ref["id"])
                found.listed.append(ref["id"])
        page_token = page.get("nextPageToken")
        if not page_token:
            break
    state = SyncState.objects.filter(account=account, provider=Provider.GMAIL, resource_id="")
    queued = set(state.values_list("pending_ids", flat=True).first() or [])
    stored_window = RawEvent.objects.filter(
        account=account,
        provider=Provider.GMAIL,
        occurred_at__gt=start + EDGE_MARGIN,
        occurred_at__lt=end - EDGE_MARGIN,
    ).exclude(_gmail_not_expected(config))
    _compare(found, account, Provider.GMAIL, queued, stored_window)
    return found


def _gmail_not_expected(config: PipelineConfig) -> Q:
    """Stored Gmail rows a listing cannot show: marked deleted, or in an excluded label."""
    condition = Q(payload__contains={DELETED_KEY: True})
    for label in sorted(excluded_label_ids(config)):
        condition |= Q(payload__labelIds__contains=[label])
    return condition


# -- Calendar -------------------------------------------------------------------------------


def _calendar_compare(
    account: GoogleAccount,
    config: PipelineConfig,
    control: RunControl,
    calendar: Resource,
    result: SyncResult,
    yielding: QuotaYield,
) -> Comparison:
    def call(request: object) -> dict:
        return _call(request, account, result)

    entries: list[dict] = []
    page_token = None
    while True:
        page = call(
            calendar.calendarList().list(maxResults=CALENDAR_LIST_PAGE_SIZE, pageToken=page_token)
        )
        yielding.started()
        entries += page.get("items", [])
        page_token = page.get("nextPageToken")
        if not page_token:
            break
    primary = next((entry for entry in entries if entry.get("primary")), None)
    check_mailbox(account, opened=primary["id"] if primary else None, what="primary calendar")
    window = calendar_window(config=config)
    settled_before = timezone.now() - timedelta(minutes=config.reconcile_settle_minutes)
    found = Comparison(window_start=window.time_min, window_end=window.time_max)
    # Only calendars whose sync has finished a listing and that are not failing.
    synced = {
        state.resource_id: state
        for state in SyncState.objects.filter(
            account=account,
            provider=Provider.CALENDAR,
            resource_id__in=selected_calendars(entries, config.calendar_selection),
        ).exclude(cursor="")
        if state.resource_id not in state.failures
    }
    unsettled: set[str] = set()
    for calendar_id in sorted(synced):
        page_token = None
        while True:
            if _stop(control, result):
                found.stopped = True
                break
            page = call(
                calendar.events().list(
                    calendarId=calendar_id,
                    showDeleted=False,
                    singleEvents=True,
                    maxResults=EVENTS_PAGE_SIZE,
                    pageToken=page_token,
                    **window.params(),
                )
            )
            time_zone = page.get("timeZone", "")
            for event in page.get("items", []):
                if event.get("status") == "cancelled":
                    continue
                item = event_item(event, calendar_id=calendar_id, time_zone=time_zone)
                if item.source_id in found.events:
                    continue
                if not source_id_fits(item.source_id):
                    # Never storable (the sync records it in its failures): not a gap.
                    found.unstorable += 1
                    continue
                found.events[item.source_id] = item
                found.listed.append(item.source_id)
                if _updated_after(event, settled_before):
                    unsettled.add(item.source_id)
            page_token = page.get("nextPageToken")
            if not page_token:
                break
        if found.stopped:
            break
    prefixes = Q(pk__in=[])
    for calendar_id in synced:
        prefixes |= Q(source_id__startswith=f"{calendar_id}/")
    # The user's rows of these calendars, whichever account stored them: a calendar id is
    # Google's own (a shared calendar has one id for every subscriber), so an event two
    # accounts list is one row, and an account that syncs the calendar vouches for all of it.
    stored_window = (
        RawEvent.objects.filter(
            user_id=account.user_id,
            provider=Provider.CALENDAR,
            occurred_at__gt=window.time_min + EDGE_MARGIN,
            occurred_at__lt=window.time_max - EDGE_MARGIN,
        )
        .filter(prefixes)
        .exclude(payload__status="cancelled")
    )
    _compare(found, account, Provider.CALENDAR, unsettled, stored_window)
    return found


def _updated_after(event: dict, moment: datetime) -> bool:
    try:
        updated = datetime.fromisoformat(str(event.get("updated") or "").replace("Z", "+00:00"))
    except ValueError:
        return False
    return (updated if updated.tzinfo else updated.replace(tzinfo=UTC)) > moment


# -- shared ---------------------------------------------------------------------------------


def _call(request: object, account: GoogleAccount, result: SyncResult) -> dict:
    """One request at the background priority; a request the quota deferred was not sent."""
    result.requests += 1
    try:
        return execute(request, account=account, priority="background")
    except QuotaDeferred:
        result.requests -= 1
        raise


def _stop(control: RunControl, result: SyncResult) -> bool:
    if control.deadline_reached():
        result.timed_out = True
        return True
    control.checkpoint()
    return False


def _compare(
    found: Comparison,
    account: GoogleAccount,
    provider: str,
    in_flight: set[str],
    stored_window: Any,
) -> None:
    """Fill missing / elsewhere / in_flight / stored / extra from the listing and the store."""
    owner: dict[str, int | None] = {}
    for start in range(0, len(found.listed), LOOKUP_CHUNK):
        chunk = found.listed[start : start + LOOKUP_CHUNK]
        owner.update(
            RawEvent.objects.filter(
                user_id=account.user_id, provider=provider, source_id__in=chunk
            ).values_list("source_id", "account_id")
        )
    for source_id in found.listed:
        if source_id in owner:
            if owner[source_id] != account.pk:
                found.elsewhere += 1
        elif source_id in in_flight:
            found.in_flight += 1
        else:
            found.missing.append(source_id)
    if found.stopped:
        # An unfinished listing says nothing about what is extra.
        found.stored = stored_window.count()
        return
    listed = set(found.listed)
    stored_ids = list(stored_window.order_by("source_id").values_list("source_id", flat=True))
    found.stored = len(stored_ids)
    found.extra = [source_id for source_id in stored_ids if source_id not in listed]


# -- jobs -----------------------------------------------------------------------------------


def reconcile_normalize(
    enqueue_next: Callable[..., None],
    *,
    account: GoogleAccount,
    provider: str,
    batch_id: uuid.UUID,
) -> None:
    """Start the provider's normalization for what a fix stored (per account and batch, as a
    sync's chain does); nothing when it stored nothing pending."""
    from jobs.normalization.selectors import raw_events_pending_exist

    kind = NORMALIZE_KINDS[provider]
    if raw_events_pending_exist(
        user_id=account.user_id, provider=provider, batch_id=batch_id, account_id=account.pk
    ):
        enqueue_next(kind, {"account_id": account.pk}, dedupe_key=f"{kind}:{account.pk}:{batch_id}")


def reconcile_enqueue(
    *,
    accounts: Iterable[GoogleAccount],
    fix: bool,
    batch_id: uuid.UUID | None = None,
    providers: Iterable[str] = PROVIDERS,
) -> list[tuple[GoogleAccount, Job, bool]]:
    """A reconcile job per account (its lane reconcile:{account_id}: an account whose job is
    still active gets no second one). (account, job, created) each."""
    started = []
    for account in accounts:
        job = enqueue(
            RECONCILE_KIND,
            user=account.user_id,
            payload={
                "account_id": account.pk,
                "fix": fix,
                "providers": [str(p) for p in providers],
            },
            batch_id=batch_id,
            priority=RECONCILE_PRIORITY,
        )
        started.append((account, job, not getattr(job, "deduplicated", False)))
    return started


def reconcile_due_accounts(*, now: datetime | None = None) -> list[GoogleAccount]:
    """Active accounts not reconciled for reconcile_interval_hours (never reconciled first)."""
    config = get_config()
    now = now or timezone.now()
    due_before = now - timedelta(hours=config.reconcile_interval_hours)
    accounts = list(GoogleAccount.objects.filter(status=GoogleAccountStatus.ACTIVE).order_by("id"))
    last = dict(
        ReconcileRun.objects.filter(account__in=accounts)
        # A skipped run (the first sync was not done) does not count: it is tried again.
        .exclude(status=ReconcileStatus.SKIPPED)
        .values("account_id")
        .annotate(last=Max("started_at"))
        .values_list("account_id", "last")
    )
    due = [a for a in accounts if a.pk not in last or last[a.pk] <= due_before]
    return sorted(due, key=lambda a: (a.pk in last, last.get(a.pk) or now, a.pk))


def reconcile_schedule() -> int:
    """The RECONCILE schedule (hourly): a reconcile job per active account that is due, fixing
    what is missing when reconcile_fix is on. Returns how many jobs started."""
    started = reconcile_enqueue(accounts=reconcile_due_accounts(), fix=get_config().reconcile_fix)
    created = sum(1 for *_, was_created in started if was_created)
    logger.info(
        "reconcile schedule: %d job(s) started, %d already active", created, len(started) - created
    )
    return created
