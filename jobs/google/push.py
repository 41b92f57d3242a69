"""Push subscriptions at Google: open, renew and stop an account's Gmail watch and calendar
notification channels, and say how healthy they are.

Gmail: `users.watch` publishes every change of the mailbox (or of the configured labels) to
a Cloud Pub/Sub topic, whose push subscription calls /google/push/gmail/; a watch lasts 7
days and is renewed in place (Google advises daily). It is per mailbox, not per OAuth grant:
when two CRM users connect one mailbox, both watches are the same one at Google, so
disconnecting one of them must not stop it (`gmail_watch_stop` checks).

Calendar: `events.watch` opens a channel per calendar that POSTs to push_calendar_address;
each channel carries a random token of ours (stored encrypted, like OAuth tokens) that every
notification repeats. A channel cannot be extended: renewal opens a new one, then stops the old
one (`channels.stop`, which needs the resourceId Google gave the channel).

Every call goes through jobs.google.client.execute (paced, errors mapped): users.watch costs
100 Gmail quota units, users.stop 50, a Calendar call one request. Row writes that a job makes
are fenced (`control.fence()`), like every sync write.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from django.db import transaction
from django.utils import timezone
from googleapiclient.discovery import Resource

from jobs.config import PipelineConfig, get_config
from jobs.errors import PermanentError, TransientError
from jobs.google.client import calendar_service, execute, gmail_service
from jobs.google.pacer import QuotaDeferred
from jobs.google.tokens import decrypt_token, encrypt_token
from jobs.models import (
    GoogleAccount,
    GoogleAccountStatus,
    Provider,
    PushChannel,
    PushChannelStatus,
)

logger = logging.getLogger(__name__)


class Fence(Protocol):
    """What a push write asks before it commits: the job's lease fence (a JobContext)."""

    def fence(self) -> None: ...


class NoFence:
    """Writes outside a job (a view, the disconnect)."""

    def fence(self) -> None:
        return None


def gmail_push_enabled(config: PipelineConfig) -> bool:
    return bool(config.push_gmail_topic and config.push_gmail_audience)


def calendar_push_enabled(config: PipelineConfig) -> bool:
    return bool(config.push_calendar_address)


def _from_ms(value: Any) -> datetime | None:
    text = str(value or "")
    if not text.isdigit():
        return None
    return datetime.fromtimestamp(int(text) / 1000, tz=UTC)


def _int(value: Any) -> int | None:
    text = str(value or "")
    return int(text) if text.isdigit() and len(text) <= 18 else None


# -- Gmail ------------------------------------------------------------------------------------


def gmail_watch_due(
    row: PushChannel | None, *, config: PipelineConfig, now: datetime | None = None
) -> str | None:
    """Why the Gmail watch must be (re)made now, or None while it is fine."""
    now = now or timezone.now()
    if row is None:
        return "no watch"
    if row.status != PushChannelStatus.ACTIVE:
        return f"watch {row.status}"
    if row.address != config.push_gmail_topic or list(row.label_ids) != list(
        config.push_gmail_label_ids
    ):
        return "topic or labels changed"
    if row.renewed_at is None or row.renewed_at <= now - timedelta(
        seconds=config.push_gmail_rewatch_after_s
    ):
        return "daily renewal"
    if row.expires_at is None or row.expires_at <= now + timedelta(
        seconds=config.push_renew_before_expiry_s
    ):
        return "expires soon"
    return None


def gmail_watch(
    *,
    account: GoogleAccount,
    service: Resource | None = None,
    control: Fence | None = None,
    config: PipelineConfig | None = None,
) -> PushChannel:
    """users.watch on the account's mailbox with the configured topic and labels; the row says
    until when. A refusal is recorded on the row (failed, last_error) and raised."""
    config = config or get_config()
    control = control or NoFence()
    service = service or gmail_service(account)
    row = PushChannel.objects.filter(account=account, provider=Provider.GMAIL).first()
    if row is None:
        with transaction.atomic():
            control.fence()
            row = PushChannel.objects.create(
                user_id=account.user_id,
                account=account,
                provider=Provider.GMAIL,
                channel_id=uuid.uuid4().hex,
                address=config.push_gmail_topic,
            )
    body: dict[str, Any] = {"topicName": config.push_gmail_topic}
    if config.push_gmail_label_ids:
        body["labelIds"] = list(config.push_gmail_label_ids)
        body["labelFilterBehavior"] = "include"
    try:
        response = execute(service.users().watch(userId="me", body=body), account=account)
    except QuotaDeferred:
        raise  # nothing sent (a push_renew job yielding its worker): the row stays as it was
    except (PermanentError, TransientError) as exc:
        _failed(row, exc, control)
        raise
    now = timezone.now()
    changed = row.address != config.push_gmail_topic
    with transaction.atomic():
        control.fence()
        row.status = PushChannelStatus.ACTIVE
        row.address = config.push_gmail_topic
        row.label_ids = list(config.push_gmail_label_ids)
        row.renewed_at = now
        if row.watched_at is None or changed or row.history_id is None:
            # A new watch announces changes after this historyId only.
            row.watched_at = now
            row.history_id = _int(response.get("historyId"))
        row.expires_at = _from_ms(response.get("expiration"))
        row.last_error = ""
        row.save()
    logger.info("account %s: Gmail watch until %s", account.pk, row.expires_at)
    return row


def gmail_watch_stop(
    *,
    account: GoogleAccount,
    service: Resource | None = None,
    control: Fence | None = None,
) -> bool:
    """Forget the account's Gmail watch; users.stop at Google unless another active account
    (another CRM user who connected the same mailbox) still has a watch on it, since Google
    keeps one watch per mailbox. True when users.stop was called."""
    control = control or NoFence()
    row = PushChannel.objects.filter(account=account, provider=Provider.GMAIL).first()
    shared = (
        PushChannel.objects.filter(
            provider=Provider.GMAIL,
            account__email=account.email.lower(),
            account__status=GoogleAccountStatus.ACTIVE,
            status=PushChannelStatus.ACTIVE,
        )
        .exclude(account=account)
        .exists()
    )
    stopped = False
    if row is not None and not shared:
        service = service or gmail_service(account)
        execute(service.users().stop(userId="me"), account=account)
        stopped = True
    if row is not None:
        with transaction.atomic():
            control.fence()
            row.delete()
    return stopped


# -- Calendar ---------------------------------------------------------------------------------


def calendar_channel_due(
    row: PushChannel | None, *, config: PipelineConfig, now: datetime | None = None
) -> str | None:
    """Why a calendar's channel must be (re)opened now, or None while it is fine."""
    now = now or timezone.now()
    if row is None:
        return "no channel"
    if row.status != PushChannelStatus.ACTIVE:
        return f"channel {row.status}"
    if row.address != config.push_calendar_address:
        return "address changed"
    if row.expires_at is None or row.expires_at <= now + timedelta(
        seconds=config.push_renew_before_expiry_s
    ):
        return "expires soon"
    return None


def calendar_channel_open(
    *,
    account: GoogleAccount,
    calendar_id: str,
    service: Resource | None = None,
    control: Fence | None = None,
    config: PipelineConfig | None = None,
) -> PushChannel:
    """events.watch on one calendar: a new channel with a random id and token of ours. The row
    is written (pending) before the call, so a notification Google sends before answering is
    accepted. A refusal leaves the row failed with its error, and is raised."""
    config = config or get_config()
    control = control or NoFence()
    service = service or calendar_service(account)
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        control.fence()
        # An earlier failed attempt leaves nothing behind but this one's outcome.
        PushChannel.objects.filter(
            account=account,
            provider=Provider.CALENDAR,
            resource_id=calendar_id,
            status=PushChannelStatus.FAILED,
        ).delete()
        row = PushChannel.objects.create(
            user_id=account.user_id,
            account=account,
            provider=Provider.CALENDAR,
            resource_id=calendar_id,
            channel_id=str(uuid.uuid4()),
            token_encrypted=encrypt_token(token),
            address=config.push_calendar_address,
        )
    body = {
        "id": row.channel_id,
        "type": "web_hook",
        "address": config.push_calendar_address,
        "token": token,
        "params": {"ttl": str(config.push_calendar_channel_ttl_s)},
    }
    try:
        response = execute(
            service.events().watch(calendarId=calendar_id, body=body), account=account
        )
    except QuotaDeferred:
        # Nothing sent (a push_renew job yielding its worker): no channel to keep a row for.
        with transaction.atomic():
            control.fence()
            PushChannel.objects.filter(pk=row.pk).delete()
        raise
    except (PermanentError, TransientError) as exc:
        _failed(row, exc, control)
        raise
    now = timezone.now()
    with transaction.atomic():
        control.fence()
        row.status = PushChannelStatus.ACTIVE
        row.google_resource_id = str(response.get("resourceId") or "")
        row.expires_at = _from_ms(response.get("expiration")) or now + timedelta(
            seconds=config.push_calendar_channel_ttl_s
        )
        row.watched_at = row.renewed_at = now
        row.save()
    logger.info(
        "account %s: calendar channel %s until %s", account.pk, row.channel_id, row.expires_at
    )
    return row


def calendar_channel_stop(
    *,
    account: GoogleAccount,
    row: PushChannel,
    service: Resource | None = None,
    control: Fence | None = None,
) -> bool:
    """channels.stop for one channel (when Google ever confirmed it), then forget it. A channel
    Google no longer knows (404) is simply forgotten. True when channels.stop was called."""
    control = control or NoFence()
    called = False
    if row.google_resource_id:
        service = service or calendar_service(account)
        body = {"id": row.channel_id, "resourceId": row.google_resource_id}
        try:
            execute(service.channels().stop(body=body), account=account)
            called = True
        except PermanentError as exc:
            # Gone already (expired, or stopped by an earlier attempt): nothing to stop.
            logger.info("account %s: channel %s not stopped: %s", account.pk, row.channel_id, exc)
    with transaction.atomic():
        control.fence()
        PushChannel.objects.filter(pk=row.pk).delete()
    return called


def _failed(row: PushChannel, exc: Exception, control: Fence) -> None:
    logger.warning("account %s: push %s failed: %s", row.account_id, row, exc)
    with transaction.atomic():
        control.fence()
        PushChannel.objects.filter(pk=row.pk).update(
            status=PushChannelStatus.FAILED, last_error=str(exc)[:2000], updated_at=timezone.now()
        )
    row.status = PushChannelStatus.FAILED
    row.last_error = str(exc)[:2000]


# -- Disconnect -------------------------------------------------------------------------------


@dataclass
class Stopped:
    gmail: bool = False
    channels: int = 0
    errors: int = 0


def push_stop_account(*, account: GoogleAccount) -> Stopped:
    """Stop everything the account has at Google (best effort: a failure is logged and the rows
    are forgotten anyway; an unstopped channel expires on its own, and notifications for a
    disconnected account are ignored). Call before its tokens are forgotten."""
    result = Stopped()
    rows = list(PushChannel.objects.filter(account=account))
    if not rows:
        return result
    usable = account.status == GoogleAccountStatus.ACTIVE and account.has_refresh_token
    for row in rows:
        try:
            if not usable:
                raise PermanentError(f"account {account.pk} is {account.status}")
            if row.provider == Provider.GMAIL:
                result.gmail = gmail_watch_stop(account=account)
            elif calendar_channel_stop(account=account, row=row):
                result.channels += 1
        except (PermanentError, TransientError) as exc:
            result.errors += 1
            logger.warning("account %s: stopping %s failed: %s", account.pk, row, exc)
        PushChannel.objects.filter(pk=row.pk).delete()
    return result


# -- Health -----------------------------------------------------------------------------------

OFF, HEALTHY, FAILING = "off", "healthy", "failing"


@dataclass(frozen=True, slots=True)
class PushHealth:
    """Push for one account and provider: "off" (not configured), "healthy" or "failing" (with
    the reason), the last notification and when the watch (or the first channel) expires."""

    state: str
    reason: str = ""
    notified_at: datetime | None = None
    expires_at: datetime | None = None

    @property
    def healthy(self) -> bool:
        return self.state == HEALTHY

    def __str__(self) -> str:
        return self.state + (f": {self.reason}" if self.reason else "")


def push_health(
    *,
    accounts: Iterable[GoogleAccount],
    config: PipelineConfig | None = None,
    now: datetime | None = None,
) -> dict[int, dict[str, PushHealth]]:
    """Account id -> {provider: PushHealth}, in one query whatever the number of accounts.

    Healthy: the watch (the channel of every calendar that has one) is active and unexpired,
    and no sync found a change that no notification announced within push_missed_grace_s. A
    quiet mailbox receives no notification at all, so silence alone is not a failure.
    """
    config = config or get_config()
    now = now or timezone.now()
    ids = [account.pk for account in accounts]
    rows: dict[int, list[PushChannel]] = {pk: [] for pk in ids}
    for row in PushChannel.objects.filter(account_id__in=ids).order_by("pk"):
        rows[row.account_id].append(row)
    return {pk: push_health_of_rows(rows[pk], config=config, now=now) for pk in ids}


def push_health_of_rows(
    rows: Iterable[PushChannel], *, config: PipelineConfig, now: datetime
) -> dict[str, PushHealth]:
    """{provider: PushHealth} from one account's rows (oldest first), already loaded."""
    rows = sorted(rows, key=lambda row: row.pk)
    missed_before = now - timedelta(seconds=config.push_missed_grace_s)
    gmail = [row for row in rows if row.provider == Provider.GMAIL]
    channels = [row for row in rows if row.provider == Provider.CALENDAR]
    return {
        Provider.GMAIL: _gmail_health(gmail, config, now, missed_before),
        Provider.CALENDAR: _calendar_health(channels, config, now, missed_before),
    }


def _missed(rows: Iterable[PushChannel], missed_before: datetime) -> bool:
    return any(
        row.unannounced_at is not None and row.unannounced_at <= missed_before for row in rows
    )


def _gmail_health(
    rows: list[PushChannel], config: PipelineConfig, now: datetime, missed_before: datetime
) -> PushHealth:
    if not gmail_push_enabled(config):
        return PushHealth(OFF)
    if not rows:
        return PushHealth(FAILING, "no watch yet")
    row = rows[0]
    seen = (row.notified_at, row.expires_at)
    if row.status == PushChannelStatus.FAILED:
        return PushHealth(FAILING, f"watch failed: {row.last_error}", *seen)
    if row.status != PushChannelStatus.ACTIVE:
        return PushHealth(FAILING, "watch not confirmed yet", *seen)
    if row.expires_at is None or row.expires_at <= now:
        return PushHealth(FAILING, "watch expired", *seen)
    if _missed(rows, missed_before):
        return PushHealth(FAILING, "a poll found mail no notification announced", *seen)
    return PushHealth(HEALTHY, "", *seen)


def _calendar_health(
    rows: list[PushChannel],
    config: PipelineConfig,
    now: datetime,
    missed_before: datetime,
) -> PushHealth:
    if not calendar_push_enabled(config):
        return PushHealth(OFF)
    if not rows:
        return PushHealth(FAILING, "no channel yet")
    live = [
        row
        for row in rows
        if row.status == PushChannelStatus.ACTIVE and row.expires_at and row.expires_at > now
    ]
    notified = max((row.notified_at for row in rows if row.notified_at), default=None)
    expires = min((row.expires_at for row in live if row.expires_at), default=None)
    seen = (notified, expires)
    covered = {row.resource_id for row in live}
    failed = [row for row in rows if row.status == PushChannelStatus.FAILED]
    uncovered = sorted({row.resource_id for row in rows} - covered)
    if uncovered:
        errors = [row.last_error for row in failed if row.resource_id in uncovered]
        reason = f"no live channel for {', '.join(uncovered)}"
        return PushHealth(FAILING, reason + (f" ({errors[0]})" if errors else ""), *seen)
    if _missed(rows, missed_before):
        return PushHealth(FAILING, "a poll found changes no notification announced", *seen)
    return PushHealth(HEALTHY, "", *seen)


# Compared against when the channel is unknown, so that case runs the same comparison.
_DUMMY_TOKEN = "-" * 43


def push_channel_verified(*, channel_id: str, token: str) -> PushChannel | None:
    """The calendar channel whose id and token a notification carries, or None (unknown
    channel, a channel whose watch call failed, or wrong token: the caller cannot tell which,
    and neither can a forger; the comparison is constant-time)."""
    row = (
        PushChannel.objects.filter(channel_id=channel_id[:64], provider=Provider.CALENDAR)
        .exclude(status=PushChannelStatus.FAILED)
        .select_related("account")
        .first()
        if channel_id
        else None
    )
    stored = decrypt_token(row.token_encrypted) if row is not None else ""
    expected = stored or _DUMMY_TOKEN
    matches = hmac.compare_digest(expected.encode(), (token or "").encode())
    return row if row is not None and stored and matches else None
