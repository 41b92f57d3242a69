"""Timeline reads; every one is scoped to its user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q

from contacts.identity import matching_key
from contacts.models import Contact, ContactIdentity
from timeline.models import TimelineEvent

MAX_LIMIT = 500


class ContactNotFound(LookupError):
    """No contact of the user matches what the operator typed; the message says why."""


class BadCursor(ValueError):
    """A `before` cursor that contact_timeline did not hand out."""


@dataclass(frozen=True, slots=True)
class TimelinePage:
    """One page of a contact's timeline, newest first; `next_before` is the cursor of the
    following (older) page, None on the last page."""

    events: list[TimelineEvent]
    next_before: str | None


def _cursor(event: TimelineEvent) -> str:
    return f"{event.occurred_at.isoformat()}~{event.pk}"


def _parse_cursor(cursor: str) -> tuple[datetime, int]:
    moment, sep, pk = cursor.rpartition("~")
    try:
        at = datetime.fromisoformat(moment)
        if not sep or at.tzinfo is None:
            raise ValueError
        return at, int(pk)
    except ValueError:
        raise BadCursor(f"not a timeline cursor: {cursor!r}") from None


def contact_timeline(
    *,
    user: AbstractBaseUser,
    contact: Contact | int,
    before: str | None = None,
    limit: int = 50,
) -> TimelinePage:
    """The contact's timeline events, newest first, `limit` at a time (1..500).

    Keyset pagination on (occurred_at, id): pass the page's `next_before` as `before` to get
    the next (older) page; pages stay stable while new events arrive. A contact of another user
    gives an empty page.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    contact_id = contact.pk if isinstance(contact, Contact) else int(contact)
    events = TimelineEvent.objects.filter(user_id=user.pk, contact_id=contact_id)
    if before:
        at, pk = _parse_cursor(before)
        # occurred_at <= at lets the index seek straight to the cursor; the OR breaks ties
        events = events.filter(occurred_at__lte=at).filter(
            Q(occurred_at__lt=at) | Q(occurred_at=at, id__lt=pk)
        )
    page = list(events.order_by("-occurred_at", "-id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return TimelinePage(events=page, next_before=_cursor(page[-1]) if more else None)


def timeline_contact_find(*, user: AbstractBaseUser, identifier: str) -> Contact:
    """The user's contact by id or by an e-mail address it has (any spelling that matches its
    key: case, IDN, gmail dots and +tags). A merged contact leads to the contact it was merged
    into. ContactNotFound when the user has none."""
    text = identifier.strip()
    contact = None
    if text.isdigit():
        contact = Contact.objects.filter(user_id=user.pk, pk=int(text)).first()
    elif (key := matching_key(text)) is not None:
        identity = (
            ContactIdentity.objects.filter(user_id=user.pk, key=key)
            .select_related("contact")
            .first()
        )
        contact = identity.contact if identity is not None else None
    else:
        raise ContactNotFound(f"'{identifier}' is neither a contact id nor an e-mail address")
    if contact is None:
        raise ContactNotFound(f"{user} has no contact '{identifier}'")
    seen = {contact.pk}
    while contact.merged_into_id is not None and contact.merged_into_id not in seen:
        seen.add(contact.merged_into_id)
        contact = Contact.objects.get(user_id=user.pk, pk=contact.merged_into_id)
    return contact


def timeline_summary(*, user_id: int) -> dict[str, object]:
    """The user's timeline events: how many, and how many of each type (for the demo summary)."""
    by_type = dict(
        TimelineEvent.objects.filter(user_id=user_id)
        .values_list("event_type")
        .annotate(n=Count("id"))
        .order_by("event_type")
    )
    return {"timelineEvents": sum(by_type.values()), "timelineEventsByType": by_type}
