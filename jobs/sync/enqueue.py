"""Starting syncs (for one user, or every active account) and following the chain they start."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from jobs.enqueue import enqueue
from jobs.models import GoogleAccount, GoogleAccountStatus, Job, Provider, SyncState
from jobs.models.job import ACTIVE_STATUSES, CLAIMABLE_STATUSES
from jobs.runner import run_job
from jobs.sync.common import SYNC_KINDS
from jobs.sync.push import calendar_job_widen, poll_providers


class SyncTargetError(LookupError):
    """The user or account to sync cannot be found or cannot sync; the message says why."""


@dataclass(frozen=True, slots=True)
class Enqueued:
    kind: str
    account: GoogleAccount
    job: Job
    # False when the lane already held an active job, which `job` is then.
    created: bool


def sync_accounts(
    *, user: AbstractBaseUser, identifier: str | None = None, email: str | None = None
) -> list[GoogleAccount]:
    """The user's active Google accounts, least recently synced first; only the one whose
    address is `email` (any case) when given.

    SyncTargetError when there is none (naming the user as `identifier`, else their username),
    or when `email` is not one of the user's accounts or not active.
    """
    name = identifier or user.get_username()
    accounts = list(GoogleAccount.objects.filter(user_id=user.pk).order_by("email"))
    if not accounts:
        raise SyncTargetError(f"user '{name}' has no connected Google account")
    if email is not None:
        wanted = email.strip().lower()
        chosen = [a for a in accounts if a.email.lower() == wanted]
        if not chosen:
            known = ", ".join(a.email for a in accounts)
            raise SyncTargetError(
                f"user '{name}' has no Google account '{email}' (connected: {known})"
            )
        if chosen[0].status != GoogleAccountStatus.ACTIVE:
            raise SyncTargetError(
                f"Google account {chosen[0].email} of user '{name}' is {chosen[0].status}: "
                "the user must reconnect it"
            )
        return chosen
    active = [a for a in accounts if a.status == GoogleAccountStatus.ACTIVE]
    if not active:
        states = ", ".join(f"{a.email} is {a.status}" for a in accounts)
        raise SyncTargetError(f"user '{name}' has no active Google account ({states})")
    return _least_recently_synced(active)


def sync_enqueue(
    *,
    accounts: Sequence[GoogleAccount],
    providers: Iterable[str] = (Provider.GMAIL, Provider.CALENDAR),
    full: bool = False,
    batch_id: uuid.UUID | None = None,
) -> list[Enqueued]:
    """Enqueue a sync per account and provider, all in one batch (new unless given).

    An account's lane holds one active sync per provider (gmail_sync:{account_id},
    calendar_sync:{account_id}): where one is already queued or running, that job is returned
    (created False) and no second one starts. Each account has its own lanes, so one account's
    active sync never stands in for another's.
    """
    batch_id = batch_id or uuid.uuid4()
    started = []
    for account in accounts:
        for provider in providers:
            kind = SYNC_KINDS[provider]
            job = enqueue(
                kind,
                user=account.user_id,
                payload={"account_id": account.pk, "full": full},
                batch_id=batch_id,
            )
            created = not getattr(job, "deduplicated", False)
            if not created and provider == Provider.CALENDAR:
                # A queued sync a push narrowed to some calendars now covers them all.
                calendar_job_widen(job=job, calendar_ids=None)
            started.append(Enqueued(kind, account, job, created=created))
    return started


def sync_enqueue_all_accounts() -> list[Enqueued]:
    """Gmail and Calendar syncs for every active account (the periodic schedule's work).

    Each account gets its own batch and its own lanes. Lanes stop pile-ups: an account whose
    sync is still active gets no second one; the least recently synced accounts go first. A
    provider whose push notifications are healthy is polled only as a safety net, once its
    last sync is push_poll_minutes old (jobs.sync.push.poll_providers).
    """
    accounts = _least_recently_synced(
        list(GoogleAccount.objects.filter(status=GoogleAccountStatus.ACTIVE))
    )
    due = poll_providers(accounts=accounts)
    started: list[Enqueued] = []
    for account in accounts:
        if due[account.pk]:
            started += sync_enqueue(accounts=[account], providers=due[account.pk])
    return started


def batch_jobs(*, batch_ids: Iterable[uuid.UUID]) -> list[Job]:
    """Every job of the batches (syncs, their continuations, later stages), oldest first."""
    return list(Job.objects.filter(batch_id__in=list(batch_ids)).order_by("id"))


def batch_run_next_due(*, batch_ids: Iterable[uuid.UUID]) -> int | None:
    """Run the batches' oldest due job in this process; its id, or None when none is due."""
    due = (
        Job.objects.filter(
            batch_id__in=list(batch_ids),
            status__in=CLAIMABLE_STATUSES,
            run_after__lte=timezone.now(),
            cancel_requested=False,
        )
        .order_by("run_after", "id")
        .values_list("pk", flat=True)
        .first()
    )
    if due is None:
        return None
    run_job(due)
    return due


def batch_active(jobs: Iterable[Job]) -> list[Job]:
    return [job for job in jobs if job.status in ACTIVE_STATUSES]


def _least_recently_synced(accounts: list[GoogleAccount]) -> list[GoogleAccount]:
    if len(accounts) < 2:
        return accounts
    last = dict(
        SyncState.objects.filter(
            account__in=accounts, provider=Provider.GMAIL, last_synced_at__isnull=False
        ).values_list("account_id", "last_synced_at")
    )
    # Never synced first, then the oldest sync.
    return sorted(accounts, key=lambda a: (a.pk in last, last.get(a.pk) or 0, a.pk))
