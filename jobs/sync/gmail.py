"""Gmail sync: windowed listing passes and history increments, batched, capped and resumable.

Every run first reads the profile (users.getProfile) and fails permanently, storing nothing,
when its address is not the account's (a token that opens someone else's mailbox). A window
pass first refreshes the account's send-as addresses (users.settings.sendAs.list, for
direction). A run then either continues an open pass or starts one:

- window pass (first sync, `full`, or an expired historyId): messages.list with
  `after:<window start>` minus the excluded folders, listing only as many ids as the run may
  fetch (gmail_max_messages_per_run); the page token and the listed-but-unfetched ids stay on
  the SyncState (page_token / pending_ids) for the next run. Before the first page, the
  profile's historyId is kept as pass_cursor and adopted as the cursor once the pass is done,
  so changes made during a long pass are read from history afterwards.
- history increment (cursor present): history.list from the cursor; added and relabelled
  messages are fetched again, deleted ones marked. More changes than a run may fetch are left
  in pending_ids like a window pass.

A message whose fetch fails permanently (a batch part answering 400/403, not 404) is recorded in
the state's `failures` with its error, skipped so the rest of the pass proceeds, and fetched
again every sync_failed_retry_every_s until it succeeds or sync_failed_max_attempts is reached
(it stays recorded then). One that kept failing transiently (5xx/429 through every resend while
its batch came back) is due again at once: the chain continues for it (the run's `more`). A
run whose fetch fails transiently after it stored at least one chunk ends there and continues
the chain (no Retry-After asked for): each of its attempts is kept for runs that store nothing.

Messages are fetched with batched messages.get (format=full, gmail_chunk_size per HTTP batch,
gmail_chunk_pause_s between batches) and every chunk is stored with the state that points past
it in one transaction, so a run that dies loses nothing and a rerun resumes exactly there.

Raw payload convention (read by normalize_gmail): RawEvent(provider="gmail", source_id=<Gmail
message id>) holds the users.messages resource in format=full exactly as fetched, occurred_at
its internalDate. Keys starting with "_" are ours: a message deleted at Gmail keeps its row,
with `"_deleted": true` merged into the payload and the row back to `pending`. Messages in
excluded labels or categories (config gmail_excluded_labels / gmail_excluded_categories) are
never inserted; one already stored that moves there (to the trash, say) is updated, so its
labels say so.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.utils import timezone
from googleapiclient.discovery import Resource

from jobs.config import PipelineConfig, get_config
from jobs.errors import PermanentError, TransientError
from jobs.google.accounts import google_account_refresh_addresses
from jobs.google.client import (
    BATCH_MAX_PARTS,
    PartFailure,
    batch_execute,
    execute,
    gmail_service,
)
from jobs.google.errors import CursorExpired
from jobs.google.pacer import QuotaDeferred, deferring
from jobs.models import GoogleAccount, Provider, SyncState
from jobs.normalization.types import DELETED_KEY
from jobs.sync.common import (
    NoDeadline,
    RunControl,
    SyncResult,
    check_mailbox,
    failure_record,
    failures_due,
    fenced,
    others_waiting,
    service_for,
    sync_state,
)
from jobs.sync.raw_events import RawItem, raw_events_update_existing, raw_events_upsert
from jobs.sync.windows import (
    backfill_extended,
    backfill_horizon,
    backfill_needed,
    gmail_window_start,
)

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE = 500
HISTORY_TYPES = ["messageAdded", "labelAdded", "labelRemoved", "messageDeleted"]
# The search operators that keep excluded system labels out of messages.list.
_QUERY_EXCLUSIONS = {
    "SPAM": "in:spam",
    "TRASH": "in:trash",
    "DRAFT": "in:drafts",
    "CHAT": "in:chats",
}
DELETED_MARK = {DELETED_KEY: True}


def gmail_sync(
    *,
    account: GoogleAccount,
    batch_id: uuid.UUID,
    full: bool = False,
    control: RunControl | None = None,
    service: Resource | None = None,
    result: SyncResult | None = None,
) -> SyncResult:
    """One Gmail sync run for `account`: continue the open pass, or start a window pass / a
    history increment; stop at the per-run cap or the deadline with `more` set."""
    state = sync_state(account, Provider.GMAIL)
    with service_for(account, service, gmail_service) as gmail:
        run = _GmailRun(
            account=account,
            state=state,
            batch_id=batch_id,
            config=get_config(),
            control=control or NoDeadline(),
            service=gmail,
            result=result,
        )
        return run.execute(full=full)


def excluded_label_ids(config: PipelineConfig) -> frozenset[str]:
    """Label ids whose messages are not synced: the excluded labels and categories."""
    categories = (
        name.upper() if name.upper().startswith("CATEGORY_") else f"CATEGORY_{name.upper()}"
        for name in config.gmail_excluded_categories
    )
    return frozenset({*(label.upper() for label in config.gmail_excluded_labels), *categories})


def window_query(*, start: datetime, excluded: Iterable[str]) -> str:
    """The messages.list `q` for a window pass: after the start, minus excluded folders."""
    terms = [f"after:{int(start.timestamp())}"]
    terms += [
        f"-{_QUERY_EXCLUSIONS[label]}" for label in sorted(excluded) if label in _QUERY_EXCLUSIONS
    ]
    return " ".join(terms)


def message_item(message: dict) -> RawItem:
    """A fetched message as a raw item: occurred_at from its internalDate (ms since the epoch)."""
    occurred_at = None
    internal = str(message.get("internalDate") or "")
    if internal.isascii() and internal.isdigit():
        # a date past year 9999 is no date: the message is stored undated, not the chunk failed
        with contextlib.suppress(OverflowError, ValueError, OSError):
            occurred_at = datetime.fromtimestamp(int(internal) / 1000, tz=UTC)
    return RawItem(source_id=str(message["id"]), occurred_at=occurred_at, payload=message)


def gmail_query_exclusions(config: PipelineConfig) -> list[str]:
    """The search terms that keep every excluded label and category out of messages.list
    (the window pass leaves categories to the fetch; a comparison must not list them)."""
    excluded = excluded_label_ids(config)
    terms = [
        f"-{_QUERY_EXCLUSIONS[label]}" for label in sorted(excluded) if label in _QUERY_EXCLUSIONS
    ]
    terms += [
        f"-category:{label.removeprefix('CATEGORY_').lower()}"
        for label in sorted(excluded)
        if label.startswith("CATEGORY_")
    ]
    return terms


def gmail_messages_store(
    *,
    account: GoogleAccount,
    ids: list[str],
    batch_id: uuid.UUID,
    control: RunControl,
    service: Resource,
    result: SyncResult,
    config: PipelineConfig | None = None,
    priority: str = "background",
) -> tuple[list[str], dict[str, PartFailure]]:
    """Fetch `ids` and store them exactly as a sync run does: batched messages.get (format=full,
    gmail_chunk_size per HTTP batch, gmail_chunk_pause_s between batches), each chunk upserted
    in its own fenced transaction (a message in an excluded label or category only updates a
    row already stored). Never reads nor writes the account's SyncState.

    Returns the ids whose fetch was answered (stored, unchanged or excluded) and the permanent
    failures by id; stops early at the deadline (result.timed_out), a cancel, or (inside the
    caller's pacer.deferring) a quota wait it may yield to (result.deferred_s).
    """
    config = config or get_config()
    run = _GmailRun(
        account=account,
        state=SyncState(user_id=account.user_id, account=account, provider=Provider.GMAIL),
        batch_id=batch_id,
        config=config,
        control=control,
        service=service,
        result=result,
    )
    run.priority = priority
    chunk_size = max(1, config.gmail_chunk_size)
    answered: list[str] = []
    failures: dict[str, PartFailure] = {}
    for start in range(0, len(ids), chunk_size):
        if start and config.gmail_chunk_pause_s > 0:
            time.sleep(config.gmail_chunk_pause_s)
        if run._stop_requested():
            break
        chunk = ids[start : start + chunk_size]
        try:
            messages, failed = run._get_messages(chunk)
        except QuotaDeferred as exc:
            # Only within a caller's deferring() (a reconcile fix): out of quota while other
            # jobs wait for a worker, stop before the chunk; the chunks stored stay stored.
            result.deferred_s = exc.retry_after or 0.0
            result.extra["quotaDeferredS"] = round(result.deferred_s, 2)
            break
        with fenced(control):
            run._store(messages)
        failures.update(failed)
        answered += [str(message["id"]) for message in messages]
    return answered, failures


# What a run writes on its SyncState row: never the backfill's progress (another lane's job
# writes that concurrently), except when the row is first created.
_RUN_FIELDS = [
    "cursor",
    "page_token",
    "pending_ids",
    "pass_cursor",
    "pass_query",
    "pass_listed",
    "pass_fetched",
    "failures",
    "last_full_sync_at",
    "last_synced_at",
    "updated_at",
]


class _GmailRun:
    # Quota priority of the run's requests (the backfill spends quota as "background").
    priority = "normal"

    def __init__(
        self,
        *,
        account: GoogleAccount,
        state: SyncState,
        batch_id: uuid.UUID,
        config: PipelineConfig,
        control: RunControl,
        service: Resource,
        result: SyncResult | None = None,
    ) -> None:
        self.account = account
        self.state = state
        self.batch_id = batch_id
        self.config = config
        self.control = control
        self.service = service
        self.excluded = excluded_label_ids(config)
        # The caller's result when given: it can read the work done so far (ctx.track).
        self.result = result if result is not None else SyncResult()
        self.budget = config.gmail_max_messages_per_run
        self.profile: dict = {}
        self.window_start: datetime | None = None

    def execute(self, *, full: bool) -> SyncResult:
        state = self.state
        self._check_mailbox()
        if self._pass_open():
            mode = "resume"
        elif state.cursor and not full:
            mode = "history"
            try:
                self._read_history()
            except CursorExpired:
                # The historyId is too old: list the window since the newest stored message.
                mode = "window-fallback"
                state.cursor = ""
                self._start_window_pass(full=False)
        else:
            mode = "window"
            self._start_window_pass(full=full)
            if state.backfill_until is None and state.backfill_done_at is None:
                # Where the first window begins: the backfill lists what lies before it.
                self._set_backfill_boundary()
        self.result.extra["mode"] = mode
        self._work_pass()
        return self.result

    # -- pass bookkeeping ---------------------------------------------------------------------

    def _check_mailbox(self) -> None:
        """Before anything is read or stored: is this the account's own mailbox?"""
        self.profile = self._call(self.service.users().getProfile(userId="me"))
        check_mailbox(self.account, opened=self.profile.get("emailAddress"), what="mailbox")

    def _work_pass(self) -> None:
        """List what the open pass still has to list, add the failed messages due for a retry,
        fetch (unless out of time), then save the state with what is left (`more`)."""
        state = self.state
        self._list_ids()
        self._queue_due_retries()
        if not self.result.timed_out:
            self._fetch_pending()
        # Items that failed transiently in this run are due again at once: the chain continues
        # for them (at most sync_failed_max_attempts times) rather than ending without them.
        self.result.more = self._pass_open() or bool(failures_due(state.failures, timezone.now()))
        self.result.extra["pendingIds"] = len(state.pending_ids)
        if state.failures:
            self.result.extra["failedItems"] = len(state.failures)
        with fenced(self.control):
            state.last_synced_at = timezone.now()
            self._save()

    def _save(self) -> None:
        """Save the run's fields of its state; call inside fenced()."""
        if self.state.pk is None:
            self.state.save()
        else:
            self.state.save(update_fields=_RUN_FIELDS)

    def _after_chunk(self, messages: list[dict]) -> None:
        """Called in the transaction that stores each chunk (the backfill notes its progress)."""

    def _pass_open(self) -> bool:
        state = self.state
        return bool(state.pass_query or state.pending_ids or state.pass_cursor)

    def _start_window_pass(self, *, full: bool) -> None:
        self._refresh_addresses()
        start = gmail_window_start(
            user_id=self.account.user_id, account_id=self.account.pk, full=full, config=self.config
        )
        state = self.state
        state.pass_cursor = str(self.profile["historyId"])
        state.pass_query = window_query(start=start, excluded=self.excluded)
        self.window_start = start
        state.page_token = ""
        state.pending_ids = []
        state.pass_listed = state.pass_fetched = 0
        # Saved (fenced) with the first listed page, or at the latest with the run's end.

    def _refresh_addresses(self) -> None:
        """Re-read the account's send-as addresses (an alias added since connecting counts as
        the user's own for direction). A permanent refusal is logged, never fatal: the mail
        matters more than its direction."""
        try:
            google_account_refresh_addresses(self.account, service=self.service)
        except PermanentError as exc:
            logger.warning("account %s: send-as addresses not refreshed: %s", self.account.pk, exc)
        self.result.requests += 1

    def _set_backfill_boundary(self) -> None:
        state = self.state
        state.backfill_until = self.window_start
        if state.pk is not None:
            with fenced(self.control):
                SyncState.objects.filter(pk=state.pk, backfill_until__isnull=True).update(
                    backfill_until=self.window_start
                )

    def _close_pass_if_done(self) -> None:
        state = self.state
        if state.pass_query or state.pending_ids:
            return
        if state.pass_cursor:
            state.cursor = state.pass_cursor
        state.pass_cursor = ""
        state.page_token = ""

    def _stop_requested(self) -> bool:
        if self.control.deadline_reached():
            self.result.timed_out = True
            return True
        self.control.checkpoint()
        return False

    def _others_waiting(self) -> bool:
        """Whether another job waits for a worker (a job's run control says; else no)."""
        return others_waiting(self.control)

    def _call(self, request: object) -> dict:
        self.result.requests += 1
        return execute(request, account=self.account, priority=self.priority)

    # -- listing ------------------------------------------------------------------------------

    def _list_ids(self) -> None:
        """List window pages until the run has enough ids for its cap (or must stop)."""
        state = self.state
        ids = list(state.pending_ids)
        known = set(ids)
        listed = False
        while state.pass_query and len(ids) < self.budget:
            if self._stop_requested():
                break
            try:
                page = self._call(
                    self.service.users()
                    .messages()
                    .list(
                        userId="me",
                        q=state.pass_query,
                        maxResults=LIST_PAGE_SIZE,
                        pageToken=state.page_token or None,
                    )
                )
            except PermanentError:
                if not state.page_token:
                    raise
                # A saved page token Google no longer takes would fail every run: relist the
                # window from its start instead (the upsert skips what is already stored).
                logger.warning("account %s: Gmail refused a saved page token", self.account.pk)
                state.page_token = ""
                continue
            listed = True
            self.result.extra["listed"] = self.result.extra.get("listed", 0) + len(
                page.get("messages", [])
            )
            for ref in page.get("messages", []):
                if ref["id"] not in known:
                    known.add(ref["id"])
                    ids.append(ref["id"])
                    state.pass_listed += 1
            state.page_token = page.get("nextPageToken", "")
            if not state.page_token:
                # Listing done; what is left is fetching pending_ids.
                state.pass_query = ""
                state.last_full_sync_at = timezone.now()
        if listed:
            state.pending_ids = ids
            self._close_pass_if_done()
            with fenced(self.control):
                self._save()

    def _queue_due_retries(self) -> None:
        """Messages that failed permanently before and are due for another try join the ids
        to fetch (after what the pass listed); the others stay skipped."""
        state = self.state
        known = set(state.pending_ids)
        due = [mid for mid in failures_due(state.failures, timezone.now()) if mid not in known]
        if due:
            state.pending_ids = [*state.pending_ids, *due]
            self.result.extra["retriedFailures"] = len(due)

    def _read_history(self) -> None:
        """Read every history page since the cursor: mark deletions, queue changed messages."""
        state = self.state
        actions: dict[str, str] = {}  # message id -> "fetch" | "delete", last change wins
        page_token = None
        latest = state.cursor
        while True:
            page = self._call(
                self.service.users()
                .history()
                .list(
                    userId="me",
                    startHistoryId=state.cursor,
                    historyTypes=HISTORY_TYPES,
                    maxResults=LIST_PAGE_SIZE,
                    pageToken=page_token,
                )
            )
            latest = str(page.get("historyId") or latest)
            for record in page.get("history", []):
                self._note_changes(record, actions)
            page_token = page.get("nextPageToken")
            if not page_token:
                break
        deleted = [message_id for message_id, action in actions.items() if action == "delete"]
        with fenced(self.control):
            if deleted:
                self.result.deleted += raw_events_update_existing(
                    user_id=self.account.user_id,
                    account_id=self.account.pk,
                    provider=Provider.GMAIL,
                    batch_id=self.batch_id,
                    items=[RawItem(message_id, None, DELETED_MARK) for message_id in deleted],
                    merge=True,
                )
            state.pending_ids = [mid for mid, action in actions.items() if action == "fetch"]
            state.pass_listed, state.pass_fetched = len(state.pending_ids), 0
            state.pass_cursor = latest
            state.pass_query = ""
            state.page_token = ""
            self._close_pass_if_done()
            self._save()

    def _note_changes(self, record: dict, actions: dict[str, str]) -> None:
        announced = self.config.push_gmail_label_ids
        for entry in record.get("messagesAdded", []):
            message = entry.get("message", {})
            labels = message.get("labelIds", [])
            # New drafts, chats and spam are not synced: no need to fetch them at all.
            if not self.excluded.intersection(labels):
                actions[message["id"]] = "fetch"
                # A change the Gmail watch announces (push health: was it announced?).
                record_id = str(record.get("id") or "")
                if record_id.isdigit() and (not announced or set(announced) & set(labels)):
                    newest = max(int(record_id), self.result.changes.get("addedHistoryId", 0))
                    self.result.changes["addedHistoryId"] = newest
        for key in ("labelsAdded", "labelsRemoved"):
            for entry in record.get(key, []):
                actions[entry["message"]["id"]] = "fetch"
        for entry in record.get("messagesDeleted", []):
            actions[entry["message"]["id"]] = "delete"

    # -- fetching -----------------------------------------------------------------------------

    def _fetch_pending(self) -> None:
        state = self.state
        ids = list(state.pending_ids)
        chunk_size = max(1, self.config.gmail_chunk_size)
        to_fetch = min(len(ids), self.budget)
        done = 0
        while done < to_fetch:
            if done and self.config.gmail_chunk_pause_s > 0:
                time.sleep(self.config.gmail_chunk_pause_s)
            if self._stop_requested():
                return
            chunk = ids[done : min(done + chunk_size, to_fetch)]
            try:
                with deferring(self._others_waiting):
                    messages, failed = self._get_messages(chunk)
            except QuotaDeferred as exc:
                # Out of quota while other jobs wait for this worker: stop before the batch
                # (nothing of it is stored) and continue once the quota frees.
                self.result.deferred_s = exc.retry_after or 0.0
                self.result.extra["quotaDeferredS"] = round(self.result.deferred_s, 2)
                return
            except TransientError as exc:
                if not done or exc.retry_after is not None:
                    raise  # nothing stored yet, or Google asked for a wait: the engine retries
                # Cut short after storing chunks: end with what is stored and continue the
                # chain (the pass is open), rather than spending one of the job's attempts on a
                # run that made progress. A run that stores nothing still fails its attempt.
                self.result.extra["interruptedBy"] = str(exc)[:500]
                logger.info("account %s: run cut short (%s); continuing", self.account.pk, exc)
                return
            done += len(chunk)
            state.pass_fetched += len(chunk)
            with fenced(self.control):
                self._store(messages)
                self._note_failures(chunk, failed)
                state.pending_ids = ids[done:]
                self._close_pass_if_done()
                self._save()
                self._after_chunk(messages)

    def _get_messages(self, ids: list[str]) -> tuple[list[dict], dict[str, PartFailure]]:
        """The fetched messages, and the errors of those that failed permanently by id."""
        users = self.service.users()
        requests = [
            users.messages().get(userId="me", id=message_id, format="full") for message_id in ids
        ]
        self.result.requests += -(-len(requests) // BATCH_MAX_PARTS)
        responses = batch_execute(
            self.service,
            requests,
            account=self.account,
            priority=self.priority,
            collect_failures=True,
            # Items that failed before: a resend that fails again is theirs, not an outage.
            suspects={i for i, message_id in enumerate(ids) if message_id in self.state.failures},
        )
        failed = {
            message_id: response
            for message_id, response in zip(ids, responses, strict=True)
            if isinstance(response, PartFailure)
        }
        # None: the message was deleted between listing and fetching.
        messages = [m for m in responses if m and not isinstance(m, PartFailure)]
        return messages, failed

    def _note_failures(self, chunk: list[str], failed: dict[str, PartFailure]) -> None:
        """Record the chunk's failing items (skipped, retried later); forget the earlier
        failures of the ids that were fetched (or found deleted) this time."""
        failures = dict(self.state.failures)
        now = timezone.now()
        for message_id in chunk:
            if message_id in failed:
                failure = failed[message_id]
                failure_record(
                    failures,
                    message_id,
                    str(failure.error),
                    config=self.config,
                    now=now,
                    transient=failure.transient,
                )
                logger.warning(
                    "account %s: message %s failed%s (%s); skipped, retried later",
                    self.account.pk,
                    message_id,
                    "" if failure.transient else " permanently",
                    failure.error,
                )
            else:
                failures.pop(message_id, None)
        self.result.extra["itemsFailed"] = self.result.extra.get("itemsFailed", 0) + len(failed)
        self.state.failures = failures

    def _store(self, messages: list[dict]) -> None:
        self.result.fetched += len(messages)
        kept: list[RawItem] = []
        excluded: list[RawItem] = []
        for message in messages:
            item = message_item(message)
            (excluded if self.excluded.intersection(message.get("labelIds", [])) else kept).append(
                item
            )
        self.result.counts.add(
            raw_events_upsert(
                user_id=self.account.user_id,
                account_id=self.account.pk,
                provider=Provider.GMAIL,
                batch_id=self.batch_id,
                items=kept,
            )
        )
        if excluded:
            self.result.excluded += len(excluded)
            self.result.counts.updated += raw_events_update_existing(
                user_id=self.account.user_id,
                account_id=self.account.pk,
                provider=Provider.GMAIL,
                batch_id=self.batch_id,
                items=excluded,
            )


BACKFILL_RESOURCE = "backfill"


def gmail_backfill(
    *,
    account: GoogleAccount,
    batch_id: uuid.UUID,
    control: RunControl | None = None,
    service: Resource | None = None,
    result: SyncResult | None = None,
) -> SyncResult:
    """One run of the Gmail backfill: mail older than where the first window began, back to
    backfill_horizon_days (0: everything), newest first, fetched at the background priority.

    Its listing (query, page token, ids to fetch, failures) lives on its own SyncState row
    (resource_id "backfill"); its progress goes to the account's main Gmail row: backfill_until
    (the oldest date reached) and backfill_done_at. `more` while work is left.
    """
    main = sync_state(account, Provider.GMAIL)
    state = sync_state(account, Provider.GMAIL, BACKFILL_RESOURCE)
    with service_for(account, service, gmail_service) as gmail:
        run = _GmailBackfillRun(
            account=account,
            state=state,
            batch_id=batch_id,
            config=get_config(),
            control=control or NoDeadline(),
            service=gmail,
            result=result,
        )
        run.main = main
        return run.execute(full=False)


def gmail_backfill_pending(account: GoogleAccount, *, config: PipelineConfig | None = None) -> bool:
    """Whether the account's Gmail backfill has work left: not done and something to list, a
    raised horizon, or failed messages whose retry is due."""
    main = SyncState.objects.filter(
        account=account, provider=Provider.GMAIL, resource_id=""
    ).first()
    if main is None or not main.cursor:
        return False
    config = config or get_config()
    if main.backfill_done_at is not None:
        horizon = backfill_horizon(config=config)
        if backfill_extended(until=main.backfill_until, horizon=horizon):
            return True
        row = SyncState.objects.filter(
            account=account, provider=Provider.GMAIL, resource_id=BACKFILL_RESOURCE
        ).first()
        return bool(row and failures_due(row.failures, timezone.now()))
    boundary = main.backfill_until or timezone.now() - timedelta(days=config.initial_window_days)
    return backfill_needed(boundary=boundary, config=config)


def backfill_query(*, start: datetime | None, end: datetime, excluded: Iterable[str]) -> str:
    """The messages.list `q` of the backfill: before the end, after the start (if any)."""
    terms = [f"before:{int(end.timestamp())}"]
    if start is not None:
        terms.insert(0, f"after:{int(start.timestamp())}")
    terms += [
        f"-{_QUERY_EXCLUSIONS[label]}" for label in sorted(excluded) if label in _QUERY_EXCLUSIONS
    ]
    return " ".join(terms)


class _GmailBackfillRun(_GmailRun):
    priority = "background"
    main: SyncState

    def execute(self, *, full: bool) -> SyncResult:
        state, main = self.state, self.main
        self._check_mailbox()
        now = timezone.now()
        horizon = backfill_horizon(now=now, config=self.config)
        self.oldest = main.backfill_until
        self.result.extra.update(mode="backfill", horizon=horizon.isoformat() if horizon else None)
        retries_only = False
        if not self._pass_open():
            if main.backfill_done_at is not None:
                if not backfill_extended(until=main.backfill_until, horizon=horizon):
                    # Done: only failed messages whose retry is due are left to try.
                    retries_only = True
                else:
                    # The horizon was raised since the backfill finished: go on from its end.
                    with fenced(self.control):
                        self._save_main(backfill_done_at=None)
            if not retries_only:
                boundary = main.backfill_until or now - timedelta(
                    days=self.config.initial_window_days
                )
                if not backfill_needed(boundary=boundary, now=now, config=self.config):
                    self._finish(horizon)
                    return self.result
                state.pass_query = backfill_query(
                    start=horizon, end=boundary, excluded=self.excluded
                )
                state.page_token = ""
                state.pending_ids = []
                state.pass_listed = state.pass_fetched = 0
        self._work_pass()
        if not self.result.more and not retries_only:
            self._finish(horizon)
        self.result.extra["oldestReached"] = self.oldest.isoformat() if self.oldest else None
        return self.result

    def _after_chunk(self, messages: list[dict]) -> None:
        dates = [item.occurred_at for item in map(message_item, messages) if item.occurred_at]
        if not dates or (self.oldest is not None and min(dates) >= self.oldest):
            return
        self.oldest = min(dates)
        self._save_main(backfill_until=self.oldest)

    def _finish(self, horizon: datetime | None) -> None:
        now = timezone.now()
        if horizon is not None and (self.oldest is None or horizon < self.oldest):
            self.oldest = horizon
        with fenced(self.control):
            # Done back to the horizon; with no horizon (everything), backfill_until is null.
            until = self.oldest if horizon is not None else None
            self._save_main(backfill_until=until, backfill_done_at=now)
        self.result.extra["backfillDone"] = True

    def _save_main(self, **fields: object) -> None:
        """Write the backfill's progress on the main row (never its cursor fields)."""
        main = self.main
        for name, value in fields.items():
            setattr(main, name, value)
        if main.pk is None:
            main.save()
        else:
            main.save(update_fields=[*fields, "updated_at"])
