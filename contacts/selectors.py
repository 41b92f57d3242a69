"""Reads of the contacts app; every one is scoped to its user."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Exists, F, OuterRef, Q, QuerySet

from contacts.identity import matching_key
from contacts.models import Contact, ContactIdentity
from jobs.errors import PayloadError
from jobs.models import Interaction, Provider, RawEvent


def batch_interaction_ids(
    *, user_id: int, batch_id: uuid.UUID | str, source: str = ""
) -> list[int]:
    """Ids of the user's interactions normalized from the raw events of `batch_id`, ascending;
    with `source` ("gmail", "calendar") only that provider's ("" for all).

    A raw event names its interaction by (user, provider = source, source_id). An unknown
    source is a PayloadError (it comes from a job's payload).
    """
    if source and source not in Provider.values:
        raise PayloadError(
            f"source must be one of {', '.join(Provider.values)} or empty, got {source!r}"
        )
    in_batch = RawEvent.objects.filter(
        user_id=user_id,
        batch_id=batch_id,
        provider=OuterRef("source"),
        source_id=OuterRef("source_id"),
    )
    interactions = Interaction.objects.filter(user_id=user_id)
    if source:
        interactions = interactions.filter(source=source)
    return list(interactions.filter(Exists(in_batch)).order_by("id").values_list("id", flat=True))


ORDERINGS: dict[str, tuple[Any, ...]] = {
    "-last_interaction_at": (F("last_interaction_at").desc(nulls_last=True), "-id"),
    "last_interaction_at": (F("last_interaction_at").asc(nulls_last=True), "id"),
    "-first_interaction_at": (F("first_interaction_at").desc(nulls_last=True), "-id"),
    "first_interaction_at": (F("first_interaction_at").asc(nulls_last=True), "id"),
    "-interaction_count": ("-interaction_count", "-id"),
    "interaction_count": ("interaction_count", "id"),
    "display_name": ("display_name", "id"),
    "-display_name": ("-display_name", "-id"),
    "primary_email": ("primary_email", "id"),
    "-created_at": ("-created_at", "-id"),
}


def contact_list(
    *, user, query: str | None = None, ordering: str = "-last_interaction_at"
) -> QuerySet[Contact]:
    """The user's live (not merged-away) contacts, newest activity first by default.

    `query` matches the display name, any identity's address (as seen or its matching key) and
    the company domain, case-insensitively. `ordering` is one of ORDERINGS (ValueError if not).
    """
    if ordering not in ORDERINGS:
        raise ValueError(f"unknown ordering {ordering!r}; one of: {', '.join(ORDERINGS)}")
    user_id = user if isinstance(user, int) else user.pk
    contacts = Contact.objects.filter(user_id=user_id, merged_into__isnull=True)
    text = (query or "").strip()
    if text:
        identities = ContactIdentity.objects.filter(user_id=user_id, contact_id=OuterRef("pk"))
        match = Q(value__icontains=text) | Q(key__icontains=text)
        key = matching_key(text)
        if key:
            match |= Q(key=key)
        contacts = contacts.filter(
            Q(display_name__icontains=text)
            | Q(primary_email__icontains=text)
            | Q(company_domain__icontains=text)
            | Exists(identities.filter(match))
        )
    return contacts.order_by(*ORDERINGS[ordering])
