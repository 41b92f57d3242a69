"""Merges: one contact into another, undoably; merge suggestions accepted or rejected.

A merge moves the source's identities and participations to the target, then whatever other
apps registered in contacts.merge_hooks (timeline events, ...), marks the source
``merged_into`` the target (it stays, hidden from lists) and records exactly which rows each
step moved in ContactMerge.moved (and both contacts' display names, under ``display_names``).
``contact_unmerge`` moves back exactly those rows that are still on the target, the rows that
followed the source's identities during the merge (participations and their timeline events),
and restores both names. Merges undo newest first: a merge whose target was merged on into
another contact cannot be undone until that later merge is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from contacts import merge_hooks
from contacts.locks import rollups_lock
from contacts.models import (
    Contact,
    ContactIdentity,
    ContactMerge,
    InteractionParticipant,
    MergeSuggestion,
    SuggestionStatus,
)

logger = logging.getLogger(__name__)

IDENTITIES = "identities"
PARTICIPANTS = "participants"
DISPLAY_NAMES = "display_names"  # {contact id: name} before the merge; not a step
_ID = ContactIdentity._meta.db_table
_P = InteractionParticipant._meta.db_table


class MergeError(ValueError):
    """A merge, unmerge or suggestion decision that cannot be done; the message says why."""


class UnmergeOrderError(MergeError):
    """The merge's target was merged on into another contact: undo that later merge first."""


# Both contacts of a step must be the user's (contact_merge checks it first; the steps hold
# the rule themselves too, so no caller can move a row to or from another user's contact).
_BOTH_THE_USERS = (
    f" AND (SELECT count(*) FROM {Contact._meta.db_table} c"
    " WHERE c.user_id = %(user_id)s AND c.id IN (%(source_id)s, %(target_id)s)) = 2"
)


def _move(table: str) -> Callable[..., list[int]]:
    def move(*, user_id: int, source_id: int, target_id: int) -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET contact_id = %(target_id)s"
                " WHERE user_id = %(user_id)s AND contact_id = %(source_id)s"
                f"{_BOTH_THE_USERS} RETURNING id",
                {"user_id": user_id, "source_id": source_id, "target_id": target_id},
            )
            return sorted(row[0] for row in cursor.fetchall())

    return move


def _restore(table: str) -> Callable[..., None]:
    def restore(*, user_id: int, source_id: int, target_id: int, ids: list[int]) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET contact_id = %(source_id)s"
                " WHERE user_id = %(user_id)s AND contact_id = %(target_id)s"
                f" AND id = ANY(%(ids)s::int8[]){_BOTH_THE_USERS}",
                {
                    "user_id": user_id,
                    "source_id": source_id,
                    "target_id": target_id,
                    "ids": list(ids),
                },
            )

    return restore


# contacts' own steps run first; registered hooks (other apps) after them.
_BUILTIN = (
    merge_hooks.MergeHook(IDENTITIES, _move(_ID), _restore(_ID)),
    merge_hooks.MergeHook(PARTICIPANTS, _move(_P), _restore(_P)),
)


def _steps() -> list[merge_hooks.MergeHook]:
    return [
        *_BUILTIN,
        *(h for h in merge_hooks.hooks() if h.name not in (IDENTITIES, PARTICIPANTS)),
    ]


def refresh_rollups(*, user_id: int, contact_ids: list[int]) -> None:
    """Recompute the rollups of `contact_ids` (contacts.rollups, imported here: it reads the
    participations this module moves)."""
    from contacts.rollups import contact_rollups_refresh

    contact_rollups_refresh(user_id=user_id, contact_ids=contact_ids)


def _user_id(user) -> int:
    return user if isinstance(user, int) else user.pk


def contact_merge(
    *, user, source: Contact, target: Contact, suggestion: MergeSuggestion | None = None
) -> ContactMerge:
    """Merge `source` into `target` (both the user's live contacts); undo with contact_unmerge."""
    user_id = _user_id(user)
    if source.pk == target.pk:
        raise MergeError("a contact cannot be merged into itself")
    with transaction.atomic():
        # before any row lock: a rollups refresh holds this lock while it waits for rows
        rollups_lock(user_id=user_id)
        locked = {
            c.pk: c
            for c in Contact.objects.select_for_update()
            .filter(user_id=user_id, pk__in=[source.pk, target.pk])
            .order_by("pk")
        }
        if len(locked) != 2:
            raise MergeError("both contacts must belong to the user")
        source, target = locked[source.pk], locked[target.pk]
        for contact in (source, target):
            if contact.merged_into_id is not None:
                raise MergeError(f"contact {contact} is already merged into another contact")
        moved: dict[str, Any] = {
            DISPLAY_NAMES: {str(c.pk): c.display_name for c in (source, target)}
        }
        for step in _steps():
            moved[step.name] = list(
                step.move(user_id=user_id, source_id=source.pk, target_id=target.pk)
            )
        source.merged_into = target
        source.save(update_fields=["merged_into", "updated_at"])
        merge = ContactMerge.objects.create(
            user_id=user_id, source=source, target=target, moved=moved, suggestion=suggestion
        )
        refresh_rollups(user_id=user_id, contact_ids=[source.pk, target.pk])
    return merge


def contact_unmerge(*, merge: ContactMerge, user=None) -> ContactMerge:
    """Undo `merge`: the rows it moved that are still on the target go back to the source,
    which is live again, and both contacts get their names from before the merge.

    Participations created after the merge for an identity that goes back follow it (and so do
    their timeline events, through the hooks), so a participation's contact is always its
    identity's. A merge that came from a suggestion leaves the suggestion rejected (the user
    said they are two people). Raises UnmergeOrderError while the target is itself merged into
    another contact.
    """
    with transaction.atomic():
        filters = Q(pk=merge.pk) if user is None else Q(pk=merge.pk, user_id=_user_id(user))
        locked = ContactMerge.objects.select_for_update().filter(filters).first()
        if locked is None:
            raise MergeError("no such merge for this user")
        merge = locked
        if merge.undone_at is not None:
            raise MergeError("this merge was already undone")
        user_id = merge.user_id
        # before the contacts' row locks (see contact_merge)
        rollups_lock(user_id=user_id)
        pair = {
            c.pk: c
            for c in Contact.objects.select_for_update()
            .filter(user_id=user_id, pk__in=[merge.source_id, merge.target_id])
            .order_by("pk")
        }
        source, target = pair[merge.source_id], pair[merge.target_id]
        if target.merged_into_id is not None:
            raise UnmergeOrderError(
                f"{target} was merged into another contact after this merge: "
                "undo the later merge first"
            )
        steps = _steps()
        missing = sorted(set(merge.moved) - {step.name for step in steps} - {DISPLAY_NAMES})
        if missing:
            raise MergeError(f"cannot undo: merge steps {missing} are no longer installed")
        # contacts' own rows first (identities, participations, and the participations that
        # followed an identity), then the registered hooks, which may follow participations;
        # jsonb does not keep key order: each group in the reverse of the steps' own order
        builtin = [step for step in steps if step.name in (IDENTITIES, PARTICIPANTS)]
        hooked = [step for step in steps if step.name not in (IDENTITIES, PARTICIPANTS)]

        def restore(group: list[merge_hooks.MergeHook]) -> None:
            for step in reversed(group):
                if step.name in merge.moved:
                    step.restore(
                        user_id=user_id,
                        source_id=source.pk,
                        target_id=target.pk,
                        ids=list(merge.moved[step.name]),
                    )

        restore(builtin)
        identity_ids = merge.moved.get(IDENTITIES) or []
        if identity_ids:
            InteractionParticipant.objects.filter(
                user_id=user_id, identity_id__in=identity_ids, contact_id=target.pk
            ).update(contact_id=source.pk)
        restore(hooked)
        names = merge.moved.get(DISPLAY_NAMES) or {}
        for contact in (source, target):
            name = names.get(str(contact.pk))
            if name is not None and name != contact.display_name:
                contact.display_name = name
                contact.save(update_fields=["display_name", "updated_at"])
        source.merged_into = None
        source.save(update_fields=["merged_into", "updated_at"])
        merge.undone_at = timezone.now()
        merge.save(update_fields=["undone_at"])
        if merge.suggestion_id is not None:
            MergeSuggestion.objects.filter(pk=merge.suggestion_id).update(
                status=SuggestionStatus.REJECTED, decided_at=merge.undone_at
            )
        refresh_rollups(user_id=user_id, contact_ids=[source.pk, merge.target_id])
    return merge


def _pending(user_id: int, suggestion: MergeSuggestion) -> MergeSuggestion:
    locked = (
        MergeSuggestion.objects.select_for_update()
        .filter(pk=suggestion.pk, user_id=user_id)
        .first()
    )
    if locked is None:
        raise MergeError("no such merge suggestion for this user")
    if locked.status != SuggestionStatus.PENDING:
        raise MergeError(f"this suggestion was already {locked.status}")
    return locked


def merge_suggestion_accept(*, user, suggestion: MergeSuggestion) -> ContactMerge:
    """Merge the pair: into the contact with more participations (the older one on a tie)."""
    user_id = _user_id(user)
    with transaction.atomic():
        suggestion = _pending(user_id, suggestion)
        pair = list(
            Contact.objects.filter(
                user_id=user_id, pk__in=[suggestion.contact_a_id, suggestion.contact_b_id]
            ).annotate(n=Count("participations"))
        )
        if len(pair) != 2:
            raise MergeError("one of the suggested contacts no longer exists")
        target, source = sorted(pair, key=lambda c: (-c.n, c.pk))
        merge = contact_merge(user=user_id, source=source, target=target, suggestion=suggestion)
        suggestion.status = SuggestionStatus.ACCEPTED
        suggestion.decided_at = timezone.now()
        suggestion.save(update_fields=["status", "decided_at"])
    return merge


def merge_suggestion_reject(*, user, suggestion: MergeSuggestion) -> MergeSuggestion:
    """Keep the two apart; the pair is never suggested again (its row stays, rejected)."""
    user_id = _user_id(user)
    with transaction.atomic():
        suggestion = _pending(user_id, suggestion)
        suggestion.status = SuggestionStatus.REJECTED
        suggestion.decided_at = timezone.now()
        suggestion.save(update_fields=["status", "decided_at"])
    return suggestion
