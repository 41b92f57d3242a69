"""Normalization reads: the addresses that decide direction, and a per-user summary."""

from __future__ import annotations

import uuid

from jobs.models import GoogleAccount, Interaction, PendingRawEvent, RawEvent


def account_addresses(*, user_id: int) -> dict[int, frozenset[str]]:
    """Each of the user's Google accounts' own addresses (address + send-as aliases), by id."""
    accounts = GoogleAccount.objects.filter(user_id=user_id).only("id", "email", "addresses")
    return {account.pk: account.own_addresses for account in accounts}


def raw_events_pending_exist(
    *,
    user_id: int,
    provider: str,
    batch_id: uuid.UUID | None = None,
    account_id: int | None = None,
) -> bool:
    """Whether raw events of `provider` still wait for normalization: of `batch_id` and of
    `account_id` when given (the work list, PendingRawEvent)."""
    pending = PendingRawEvent.objects.filter(user_id=user_id, provider=provider)
    if batch_id is not None:
        pending = pending.filter(batch_id=batch_id)
    if account_id is not None:
        pending = pending.filter(raw_event__account_id=account_id)
    return pending.exists()


def normalization_summary(*, user_id: int) -> dict[str, int]:
    """Interactions stored, raw events that failed to normalize and raw events still pending."""
    return {
        "interactions": Interaction.objects.filter(user_id=user_id).count(),
        "failedNormalizations": RawEvent.objects.filter(user_id=user_id).failed().count(),
        "pendingRawEvents": PendingRawEvent.objects.filter(user_id=user_id).count(),
    }
