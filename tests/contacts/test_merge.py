"""Issue 9, merges: suggestions never merge by themselves; accept merges; unmerge restores
exactly; reject is remembered; other apps' rows move through merge hooks."""

from __future__ import annotations

import sys
import types

import pytest

from contacts import merge_hooks
from contacts.models import (
    Contact,
    ContactIdentity,
    ContactMerge,
    InteractionParticipant,
    MergeSuggestion,
)
from contacts.services.merge import (
    MergeError,
    contact_merge,
    contact_unmerge,
    merge_suggestion_accept,
    merge_suggestion_reject,
)
from jobs.models import Interaction
from tests.contacts.factories import OWN, account_for, event, extract, gmail, ingest
from timeline.models import TimelineEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair(user):
    """Two contacts at one company with similar names, a few mails each, and a meeting."""
    account_for(user)
    batch = ingest(
        user,
        mails=[
            gmail(frm="Katherine Johnson <kjohnson@nasa.example>", to=[OWN]),
            gmail(frm="Katherine Johnson <kjohnson@nasa.example>", to=[OWN]),
            gmail(frm=OWN, to=["kjohnson@nasa.example", "kj@nasa.example"]),
            gmail(frm="Katherine Johnsen <kj@nasa.example>", to=[OWN]),
            gmail(frm="Dorothy Vaughan <dv@nasa.example>", to=[OWN]),
        ],
        events=[
            event(
                attendees=[
                    {"email": "kj@nasa.example", "responseStatus": "accepted"},
                    {"email": "kjohnson@nasa.example", "responseStatus": "declined"},
                ]
            )
        ],
    )
    extract(user, batch)
    return (
        Contact.objects.get(primary_email="kjohnson@nasa.example"),
        Contact.objects.get(primary_email="kj@nasa.example"),
    )


def rows(user) -> dict[str, list[tuple]]:
    """Every row merges touch, in full."""
    return {
        "identities": list(ContactIdentity.objects.filter(user=user).order_by("id").values_list()),
        "participants": list(
            InteractionParticipant.objects.filter(user=user).order_by("id").values_list()
        ),
        # Every column but updated_at, which records that a merge (and its undo) touched the row.
        "timeline": list(
            TimelineEvent.objects.filter(user=user)
            .order_by("id")
            .values_list(
                *(f.attname for f in TimelineEvent._meta.concrete_fields if f.name != "updated_at")
            )
        ),
        "contacts": list(
            Contact.objects.filter(user=user)
            .order_by("id")
            .values_list("id", "display_name", "primary_email", "company_domain", "merged_into")
        ),
    }


def test_a_fuzzy_pair_gets_a_suggestion_and_is_not_merged_until_accepted(user, pair):
    big, small = pair
    suggestion = MergeSuggestion.objects.get(user=user)
    assert {suggestion.contact_a_id, suggestion.contact_b_id} == {big.pk, small.pk}
    assert suggestion.status == "pending" and suggestion.score >= 88
    assert not Contact.objects.filter(merged_into__isnull=False).exists()


def test_accept_merges(user, pair):
    big, small = pair
    suggestion = MergeSuggestion.objects.get(user=user)
    small_identities = set(small.identities.values_list("id", flat=True))
    small_participations = set(small.participations.values_list("id", flat=True))

    merge = merge_suggestion_accept(user=user, suggestion=suggestion)

    # into the contact with more participations
    assert (merge.source_id, merge.target_id) == (small.pk, big.pk)
    small.refresh_from_db()
    suggestion.refresh_from_db()
    assert small.merged_into_id == big.pk
    assert suggestion.status == "accepted" and suggestion.decided_at is not None
    assert merge.suggestion_id == suggestion.pk
    assert set(merge.moved["identities"]) == small_identities
    assert set(merge.moved["participants"]) == small_participations
    assert not InteractionParticipant.objects.filter(contact=small).exists()
    assert set(big.identities.values_list("key", flat=True)) == {
        "kjohnson@nasa.example",
        "kj@nasa.example",
    }
    with pytest.raises(MergeError, match="already accepted"):
        merge_suggestion_accept(user=user, suggestion=suggestion)


def test_unmerge_restores_identities_and_participants_exactly(user, pair):
    big, small = pair
    before = rows(user)
    merge = contact_merge(user=user, source=small, target=big)
    assert rows(user) != before
    contact_unmerge(merge=merge)
    assert rows(user) == before
    merge.refresh_from_db()
    assert merge.undone_at is not None
    with pytest.raises(MergeError, match="already undone"):
        contact_unmerge(merge=merge)


def test_unmerge_restores_registered_hook_rows_exactly_with_a_unique_conflict(user, pair):
    """A registered hook (timeline's) that cannot move a conflicting row keeps it on the
    source; unmerge puts back exactly the rows it moved."""
    big, small = pair
    interactions = list(Interaction.objects.filter(user=user).order_by("id"))

    def event_row(contact, interaction, kind="email_received"):
        return TimelineEvent.objects.create(
            user=user,
            contact=contact,
            interaction=interaction,
            event_type=kind,
            occurred_at=interaction.occurred_at,
            title=interaction.subject,
        )

    event_row(big, interactions[0])
    conflict = event_row(small, interactions[0])  # same interaction and type on both
    movable = event_row(small, interactions[3])

    # timeline registers its hook ("timeline_events") in its AppConfig.ready(): the real one.
    assert "timeline_events" in {hook.name for hook in merge_hooks.hooks()}
    before = rows(user)
    merge = contact_merge(user=user, source=small, target=big)
    assert merge.moved["timeline_events"] == [movable.pk]
    assert TimelineEvent.objects.get(pk=conflict.pk).contact_id == small.pk
    contact_unmerge(merge=merge)
    assert rows(user) == before


def test_merge_recomputes_rollups_of_both_contacts(user, pair, monkeypatch):
    calls = []
    stub = types.ModuleType("contacts.rollups")
    stub.contact_rollups_refresh = lambda **kw: calls.append(kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "contacts.rollups", stub)
    big, small = pair
    merge = contact_merge(user=user, source=small, target=big)
    contact_unmerge(merge=merge)
    assert calls == [
        {"user_id": user.pk, "contact_ids": [small.pk, big.pk]},
        {"user_id": user.pk, "contact_ids": [small.pk, big.pk]},
    ]


def test_reject_is_remembered(user, pair):
    suggestion = MergeSuggestion.objects.get(user=user)
    merge_suggestion_reject(user=user, suggestion=suggestion)
    # the smaller contact is renamed by new mail, so it is compared again: no new suggestion
    batch = ingest(
        user, mails=[gmail(frm="Katherine Johnson <kj@nasa.example>", to=[OWN]) for _ in range(3)]
    )
    report = extract(user, batch)
    assert report.contacts_renamed == 1
    assert report.suggestions_created == 0
    (again,) = MergeSuggestion.objects.filter(user=user)
    assert (again.pk, again.status) == (suggestion.pk, "rejected")
    assert not Contact.objects.filter(merged_into__isnull=False).exists()
    with pytest.raises(MergeError, match="already rejected"):
        merge_suggestion_accept(user=user, suggestion=suggestion)


def test_undoing_an_accepted_suggestion_leaves_it_rejected(user, pair):
    suggestion = MergeSuggestion.objects.get(user=user)
    merge = merge_suggestion_accept(user=user, suggestion=suggestion)
    contact_unmerge(merge=merge)
    suggestion.refresh_from_db()
    assert suggestion.status == "rejected"


def test_merge_errors_are_clear(user, other_user, pair):
    big, small = pair
    with pytest.raises(MergeError, match="into itself"):
        contact_merge(user=user, source=big, target=big)
    with pytest.raises(MergeError, match="belong to the user"):
        contact_merge(user=other_user, source=small, target=big)
    contact_merge(user=user, source=small, target=big)
    with pytest.raises(MergeError, match="already merged"):
        contact_merge(user=user, source=small, target=big)
    assert ContactMerge.objects.count() == 1


@pytest.fixture
def chain(user):
    """Carl, Bob and Jane, a mail each: Carl merged into Bob (m2), then Bob into Jane (m3)."""
    account_for(user)
    extract(
        user,
        ingest(
            user,
            mails=[
                gmail(frm=f"{name} <{name.lower()}@acme.example>", to=[OWN])
                for name in ("Carl", "Bob", "Jane")
            ],
        ),
    )
    carl, bob, jane = (
        Contact.objects.get(user=user, primary_email=f"{n}@acme.example")
        for n in ("carl", "bob", "jane")
    )
    before = rows(user)
    m2 = contact_merge(user=user, source=carl, target=bob)
    m3 = contact_merge(user=user, source=bob, target=jane)
    return before, m2, m3, (carl, bob, jane)


def test_item2_undoing_merges_out_of_order_is_refused_and_changes_nothing(user, chain):
    before, m2, m3, (carl, _bob, _jane) = chain
    merged = rows(user)
    with pytest.raises(MergeError, match="undo the later merge first"):
        contact_unmerge(merge=m2)
    assert rows(user) == merged
    m2.refresh_from_db()
    assert m2.undone_at is None
    # in the right order both undo, back to exactly where we started
    contact_unmerge(merge=m3)
    contact_unmerge(merge=m2)
    assert rows(user) == before
    assert [i.value for i in ContactIdentity.objects.filter(contact=carl)] == ["carl@acme.example"]


def test_item2_undoing_merges_newest_first_restores_exactly(user, chain):
    before, m2, m3, (_carl, bob, _jane) = chain
    contact_unmerge(merge=m3)
    assert ContactIdentity.objects.filter(contact=bob).count() == 2  # Bob's and Carl's
    contact_unmerge(merge=m2)
    assert rows(user) == before


def test_item2_unmerge_restores_only_rows_still_on_the_target(user, chain):
    """A row the merge moved that is on another contact now (put there after the merge) stays
    where it is: restore moves back only rows on the merge's target."""
    _before, m2, m3, (_carl, _bob, jane) = chain
    contact_unmerge(merge=m3)
    carl_identity = ContactIdentity.objects.get(user=user, value="carl@acme.example")
    ContactIdentity.objects.filter(pk=carl_identity.pk).update(contact=jane)
    contact_unmerge(merge=m2)
    assert ContactIdentity.objects.get(pk=carl_identity.pk).contact_id == jane.pk


def test_the_built_in_merge_steps_never_move_rows_to_or_from_another_users_contact(
    user, other_user, pair
):
    """Defence in depth under contact_merge's own checks: the identity and participant steps
    move a user's rows only between contacts of that user."""
    from contacts.services.merge import _BUILTIN

    kj, _ = pair
    foreign = Contact.objects.create(user=other_user, display_name="Not yours")
    models = {"identities": ContactIdentity, "participants": InteractionParticipant}

    def placement() -> dict[str, list[tuple[int, int]]]:
        return {
            name: sorted(model.objects.filter(user=user).values_list("id", "contact_id"))
            for name, model in models.items()
        }

    before = placement()
    for step in _BUILTIN:
        mine = list(models[step.name].objects.filter(contact=kj).values_list("id", flat=True))
        assert mine  # the step has rows it could move
        assert step.move(user_id=user.pk, source_id=kj.pk, target_id=foreign.pk) == []
        step.restore(user_id=user.pk, source_id=foreign.pk, target_id=kj.pk, ids=mine)
    assert placement() == before
    assert not ContactIdentity.objects.filter(contact=foreign).exists()
    assert not InteractionParticipant.objects.filter(contact=foreign).exists()
