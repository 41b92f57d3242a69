"""What a completed OAuth consent does: connect the account, read its addresses, start its sync.

Separate from jobs.google.accounts, which the sync imports (google_account_refresh_addresses):
this module starts syncs, so it imports jobs.sync and must not be imported by it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC

from django.contrib.auth.models import AbstractBaseUser
from google.oauth2.credentials import Credentials
from googleapiclient.errors import HttpError

from jobs.errors import PermanentError, TransientError
from jobs.google.accounts import google_account_connect, google_account_refresh_addresses
from jobs.google.client import build_with_credentials
from jobs.google.errors import TRANSPORT_ERRORS
from jobs.models import GoogleAccount
from jobs.sync.enqueue import Enqueued, sync_enqueue
from jobs.sync.push import push_renew_enqueue

logger = logging.getLogger(__name__)

# What the connect flow asks Google for: read-only mail and calendars.
SCOPES = [
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/calendar.readonly",
]


class GoogleUnreachable(Exception):
    """Google could not tell the new account's address; nothing was stored."""


@dataclass(frozen=True, slots=True)
class Connected:
    account: GoogleAccount
    syncs: list[Enqueued]


def google_account_connect_oauth(
    *, user: AbstractBaseUser, credentials: Credentials, scopes: Iterable[str]
) -> Connected:
    """Store the account the consent was for, read its send-as addresses, start its sync.

    The address comes from Gmail's getProfile with the new credentials (GoogleUnreachable when
    Google cannot say). The send-as list is best effort here: the sync reads it again at each
    window pass. One sync per provider starts for this account (sync_enqueue), and a
    push_renew job when push notifications are configured.
    """
    gmail = build_with_credentials("gmail", "v1", credentials)
    try:
        email = gmail.users().getProfile(userId="me").execute()["emailAddress"]
    except (HttpError, KeyError, *TRANSPORT_ERRORS) as exc:
        logger.warning("reading the new Google account's profile failed: %s", type(exc).__name__)
        raise GoogleUnreachable(type(exc).__name__) from None
    expiry = credentials.expiry.replace(tzinfo=UTC) if credentials.expiry else None
    account = google_account_connect(
        user=user,
        email=email,
        refresh_token=credentials.refresh_token or "",
        access_token=credentials.token or "",
        expires_at=expiry,
        scopes=scopes,
    )
    try:
        google_account_refresh_addresses(account, service=gmail)
    except (TransientError, PermanentError) as exc:
        logger.warning(
            "reading the send-as addresses of Google account %s failed (%s); the sync reads "
            "them again",
            account.pk,
            type(exc).__name__,
        )
    syncs = sync_enqueue(accounts=[account])
    # Push notifications (when configured): the Gmail watch and calendar channels.
    push_renew_enqueue(account=account)
    return Connected(account=account, syncs=syncs)
