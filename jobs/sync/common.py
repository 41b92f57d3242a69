"""What the Gmail and Calendar syncs share: the run's result, its stop signal, the account check."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.db import transaction
from googleapiclient.discovery import Resource

from jobs.config import PipelineConfig
from jobs.context import JobContext, Metrics
from jobs.errors import PermanentError
from jobs.models import GoogleAccount, GoogleAccountStatus, SyncState
from jobs.normalization.selectors import raw_events_pending_exist
from jobs.payloads import Payload
from jobs.pipeline import next_stage
from jobs.sync.raw_events import UpsertCounts

# The sync job kind of each provider.
SYNC_KINDS: dict[str, str] = {"gmail": "gmail_sync", "calendar": "calendar_sync"}


class RunControl(Protocol):
    """Where a sync asks whether to stop: the JobContext in a job, a no-op elsewhere."""

    def deadline_reached(self) -> bool: ...

    def checkpoint(self) -> None: ...

    def fence(self) -> None: ...


class NoDeadline:
    """Run to the end (benchmarks, shell use)."""

    def deadline_reached(self) -> bool:
        return False

    def checkpoint(self) -> None:
        return None

    def fence(self) -> None:
        return None


@contextmanager
def fenced(control: RunControl) -> Iterator[None]:
    """A transaction for a write that moves a cursor (raw events with their SyncState, the
    state alone): the lease fence first, so a worker whose job was handed on writes nothing."""
    with transaction.atomic():
        control.fence()
        yield


def others_waiting(control: RunControl) -> bool:
    """Whether another job waits for a worker: a job's run control says (JobContext
    .others_waiting); elsewhere (benchmarks, shell use) nobody does."""
    ask = getattr(control, "others_waiting", None)
    return bool(ask and ask())


@contextmanager
def service_for(
    account: GoogleAccount,
    service: Resource | None,
    build: Callable[[GoogleAccount], Resource],
) -> Iterator[Resource]:
    """The caller's `service`, or one built for the account and closed on the way out (httplib2
    would leave its sockets open)."""
    if service is not None:
        yield service
        return
    own = build(account)
    try:
        yield own
    finally:
        own.close()


def sync_state(account: GoogleAccount, provider: str, resource_id: str = "") -> SyncState:
    """The account's SyncState row for (provider, resource_id), or a new unsaved one: it is
    saved (created) only by the run's fenced writes, so a late worker leaves no row behind."""
    return SyncState.objects.filter(
        account=account, provider=provider, resource_id=resource_id
    ).first() or SyncState(
        user_id=account.user_id, account=account, provider=provider, resource_id=resource_id
    )


@dataclass
class SyncResult:
    """One sync run: what it fetched and stored, what it cost, and whether work is left."""

    fetched: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    excluded: int = 0
    deleted: int = 0
    requests: int = 0
    timed_out: bool = False
    # Work is left (cap or deadline reached): the job continues in a new run.
    more: bool = False
    # The run stopped for its account's quota while other jobs waited for a worker: the
    # continuation is due this many seconds later (jobs.google.pacer, quota_yield_after_s).
    deferred_s: float = 0.0
    # Payload fields the continuation takes in place of the job's own (a Calendar sync that
    # yielded: the calendars it has not finished; `full` when it yielded before its reset).
    again: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # What changed at Google, for push health (jobs.sync.push), not for the metrics: Gmail
    # "addedHistoryId" (the newest history record that added a message worth announcing),
    # Calendar "calendars" ({calendar id: the newest `updated` of an incremental listing}).
    changes: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> Metrics:
        return Metrics(
            items_fetched=self.fetched,
            items_inserted=self.counts.inserted,
            # Fetched but not stored anew or changed: identical to the stored copy, or excluded.
            items_skipped=self.fetched - self.counts.inserted - self.counts.updated,
            timed_out=self.timed_out,
            details={
                "itemsUpdated": self.counts.updated,
                "itemsExcluded": self.excluded,
                "itemsDeleted": self.deleted,
                "requests": self.requests,
                "continues": self.more,
                **({"itemsRejected": len(self.counts.rejected)} if self.counts.rejected else {}),
                **self.extra,
            },
        )


class MailboxMismatch(PermanentError):
    """The token opens someone else's mailbox or calendar: nothing may be stored under this
    account, and retrying cannot help (the account must be reconnected with its own consent)."""


def check_mailbox(account: GoogleAccount, *, opened: str | None, what: str) -> None:
    """MailboxMismatch unless `opened` (Gmail's profile address, the primary calendar's id) is
    the account's address (any case)."""
    if (opened or "").strip().lower() != account.email.strip().lower():
        raise MailboxMismatch(
            f"Google account {account.pk} ({account.email}): its token opens the {what} of "
            f"{opened or 'nobody'}; nothing was stored. Reconnect the account with its own login."
        )


def failure_record(
    failures: dict[str, Any],
    key: str,
    error: str,
    *,
    config: PipelineConfig,
    now: datetime,
    transient: bool = False,
) -> None:
    """Record (or count again) a failure of `key` in a SyncState's `failures`: a permanent one
    is retried after sync_failed_retry_every_s, a `transient` one (it kept failing with 5xx/429
    while the rest of its batch came back) at the next run; neither any more after
    sync_failed_max_attempts."""
    previous = failures.get(key) or {}
    attempts = int(previous.get("attempts", 0)) + 1
    retry_at = now + timedelta(seconds=0 if transient else config.sync_failed_retry_every_s)
    failures[key] = {
        "error": error[:1000],
        "attempts": attempts,
        "firstFailedAt": previous.get("firstFailedAt") or now.isoformat(),
        "lastFailedAt": now.isoformat(),
        "retryAt": retry_at.isoformat() if attempts < config.sync_failed_max_attempts else None,
    }


def failure_due(failures: dict[str, Any], key: str, now: datetime) -> bool:
    """Whether a recorded failure may be tried again now (False once given up)."""
    retry_at = (failures.get(key) or {}).get("retryAt")
    return isinstance(retry_at, str) and datetime.fromisoformat(retry_at) <= now


def failures_due(failures: dict[str, Any], now: datetime) -> list[str]:
    return [key for key in failures if failure_due(failures, key, now)]


def sync_account(*, account_id: int, user_id: int) -> GoogleAccount:
    """The user's connected account, or PermanentError: retrying cannot reconnect it."""
    account = GoogleAccount.objects.filter(pk=account_id, user_id=user_id).first()
    if account is None:
        raise PermanentError(f"Google account {account_id} does not exist for user {user_id}")
    if account.status != GoogleAccountStatus.ACTIVE:
        raise PermanentError(
            f"Google account {account_id} is {account.status}: the user must reconnect it"
        )
    return account


# Backfill chains run below every incremental sync (0).
BACKFILL_PRIORITY = 5


def sync_start_backfill(ctx: JobContext, *, account: GoogleAccount, kind: str) -> None:
    """Start the account's backfill chain of `kind` once this run succeeds (a batch of its own,
    priority 5, its own lane: where one is active, no second starts); a cancelled or failed
    run starts none."""
    ctx.start_chain(kind, {"account_id": account.pk}, priority=BACKFILL_PRIORITY)


def sync_follow_up(
    ctx: JobContext,
    *,
    result: SyncResult,
    account: GoogleAccount,
    provider: str,
    again: Payload,
) -> None:
    """Continue the sync while work is left; once the chain is done, start the next stage.

    The next stage starts once, at the end of the chain, so one normalization job sees every
    row the chain stored (none left behind a normalization that was already running).
    """
    if result.more:
        resume = dataclasses.replace(again, **result.again) if result.again else again
        ctx.continue_with(resume, delay_s=result.deferred_s)
        return
    following = next_stage(ctx.job.kind)
    if following and raw_events_pending_exist(
        user_id=account.user_id, provider=provider, batch_id=ctx.batch_id, account_id=account.pk
    ):
        # Per account: two accounts of one user in one batch each get their normalization.
        ctx.enqueue_next(
            following,
            {"account_id": account.pk},
            dedupe_key=f"{following}:{account.pk}:{ctx.batch_id}",
        )


def sync_job_run(
    ctx: JobContext,
    sync: Callable[..., SyncResult],
    *,
    account_id: int,
    provider: str,
    again: Payload,
    backfill: tuple[str, Callable[[GoogleAccount], bool]] | None = None,
    **options: Any,
) -> Metrics:
    """One run of a sync job: `sync(account=..., batch_id=..., control=ctx, result=...,
    **options)` for the user's account, then its follow-up (`again` while work is left, else
    the next stage). With `backfill` (kind, pending): once the chain is done, the backfill chain
    of that kind starts if pending(account) says it has work."""
    # Tracked from the start: a run that fails after storing still reports what it stored.
    result = SyncResult()
    ctx.track(result.metrics)
    account = sync_account(account_id=account_id, user_id=ctx.user_id)
    sync(account=account, batch_id=ctx.batch_id, control=ctx, result=result, **options)
    sync_follow_up(ctx, result=result, account=account, provider=provider, again=again)
    if not result.more:
        # imported here: jobs.sync.push enqueues syncs (jobs.sync.enqueue imports the runner)
        from jobs.sync.push import push_sync_finished

        # Notifications that arrived while this chain ran: one more sync, in a chain of its own.
        follow_up = push_sync_finished(ctx, account=account, provider=provider, result=result)
        if follow_up is not None:
            ctx.start_chain(ctx.job.kind, follow_up)
            result.extra["pushFollowUp"] = True
    if backfill is not None and not result.more:
        kind, pending = backfill
        if pending(account):
            # The recent window is in: the older items follow in a chain of their own.
            sync_start_backfill(ctx, account=account, kind=kind)
    return result.metrics()
