"""Reads of the contacts app; every one is scoped to its user."""

from __future__ import annotations

import uuid

from django.db.models import Exists, OuterRef

from jobs.models import Interaction, RawEvent


def batch_interaction_ids(*, user_id: int, batch_id: uuid.UUID | str) -> list[int]:
    """Ids of the user's interactions normalized from the raw events of `batch_id`, ascending.

    A raw event names its interaction by (user, provider = source, source_id).
    """
    in_batch = RawEvent.objects.filter(
        user_id=user_id,
        batch_id=batch_id,
        provider=OuterRef("source"),
        source_id=OuterRef("source_id"),
    )
    return list(
        Interaction.objects.filter(user_id=user_id)
        .filter(Exists(in_batch))
        .order_by("id")
        .values_list("id", flat=True)
    )
