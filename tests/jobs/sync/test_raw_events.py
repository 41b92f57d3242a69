"""The raw-event upsert: exact inserted / updated / skipped counts, one statement per chunk."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from jobs.models import RawEvent
from jobs.normalization.selectors import raw_events_pending_exist
from jobs.sync.raw_events import (
    RawItem,
    raw_events_latest_occurred_at,
    raw_events_update_existing,
    raw_events_upsert,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def items(n: int, *, start: int = 0, version: int = 1) -> list[RawItem]:
    return [
        RawItem(f"m{i}", T0 + timedelta(minutes=i), {"id": f"m{i}", "v": version})
        for i in range(start, start + n)
    ]


def upsert(user, batch: uuid.UUID | None = None, **kwargs):
    return raw_events_upsert(
        user_id=user.pk,
        account_id=None,
        provider="gmail",
        batch_id=batch or uuid.uuid4(),
        **kwargs,
    )


def test_it_counts_inserts_updates_and_skips_exactly(user):
    first = upsert(user, items=items(5))
    assert (first.inserted, first.updated, first.skipped) == (5, 0, 0)

    changed = items(2, version=2)
    again = upsert(user, items=[*changed, *items(3, start=2), *items(2, start=5)])
    assert (again.inserted, again.updated, again.skipped) == (2, 2, 3)
    assert RawEvent.objects.filter(user=user).count() == 7
    assert RawEvent.objects.get(user=user, source_id="m0").payload == {"id": "m0", "v": 2}


def test_it_skips_messages_already_stored_and_leaves_them_in_their_batch(user):
    first_batch = uuid.uuid4()
    upsert(user, first_batch, items=items(3))
    RawEvent.objects.filter(user=user).update(status="normalized")

    rerun = upsert(user, items=items(3))

    assert (rerun.inserted, rerun.updated, rerun.skipped) == (0, 0, 3)
    assert set(RawEvent.objects.values_list("batch_id", "status").distinct()) == {
        (first_batch, "normalized")
    }


def test_a_changed_payload_goes_back_to_pending_in_the_new_batch(user):
    upsert(user, items=items(1))
    RawEvent.objects.update(status="failed", error="boom")
    new_batch = uuid.uuid4()

    counts = upsert(user, new_batch, items=items(1, version=2))

    row = RawEvent.objects.get()
    assert counts.updated == 1
    assert (row.status, row.error, row.batch_id) == ("pending", "", new_batch)


def test_a_source_id_twice_in_one_chunk_is_stored_once(user):
    counts = upsert(user, items=[*items(1), *items(1, version=2)])
    assert (counts.inserted, counts.skipped) == (1, 1)
    assert RawEvent.objects.get().payload["v"] == 2


def test_rows_are_scoped_by_user_and_provider(user, other_user):
    upsert(user, items=items(2))
    theirs = raw_events_upsert(
        user_id=other_user.pk,
        account_id=None,
        provider="gmail",
        batch_id=uuid.uuid4(),
        items=items(2),
    )
    calendar = raw_events_upsert(
        user_id=user.pk, account_id=None, provider="calendar", batch_id=uuid.uuid4(), items=items(2)
    )
    assert theirs.inserted == 2 and calendar.inserted == 2
    assert RawEvent.objects.count() == 6


def test_merge_keeps_what_a_partial_payload_does_not_say(user):
    upsert(user, items=[RawItem("e1", T0, {"id": "e1", "summary": "Demo", "status": "confirmed"})])

    counts = upsert(
        user, items=[RawItem("e1", None, {"id": "e1", "status": "cancelled"})], merge=True
    )

    row = RawEvent.objects.get()
    assert counts.updated == 1
    assert row.payload == {"id": "e1", "summary": "Demo", "status": "cancelled"}
    assert row.occurred_at == T0  # a stub without a time keeps the known one


def test_update_existing_never_inserts_and_marks_once(user):
    upsert(user, items=items(2))
    mark = [RawItem("m0", None, {"_deleted": True}), RawItem("gone", None, {"_deleted": True})]

    assert (
        raw_events_update_existing(
            user_id=user.pk, provider="gmail", batch_id=uuid.uuid4(), items=mark, merge=True
        )
        == 1
    )
    assert (
        raw_events_update_existing(
            user_id=user.pk, provider="gmail", batch_id=uuid.uuid4(), items=mark, merge=True
        )
        == 0
    )
    assert RawEvent.objects.count() == 2
    assert RawEvent.objects.get(source_id="m0").payload == {"id": "m0", "v": 1, "_deleted": True}


def test_payloads_postgres_would_refuse_are_cleaned_not_fatal(user):
    nasty = {"id": "x", "subject": "nul\x00byte", "lone": "surrogate\udcff", "n\x00": 1}
    counts = upsert(user, items=[RawItem("x", None, nasty)])
    assert counts.inserted == 1
    assert RawEvent.objects.get().payload["subject"] == "nulbyte"


def test_selectors_read_the_latest_time_and_pending_rows(user):
    batch = uuid.uuid4()
    assert raw_events_latest_occurred_at(user_id=user.pk, provider="gmail") is None
    upsert(user, batch, items=items(4))
    assert raw_events_latest_occurred_at(user_id=user.pk, provider="gmail") == T0 + timedelta(
        minutes=3
    )
    assert raw_events_pending_exist(user_id=user.pk, provider="gmail", batch_id=batch)
    RawEvent.objects.update(status="normalized")
    assert not raw_events_pending_exist(user_id=user.pk, provider="gmail", batch_id=batch)


@pytest.mark.parametrize("size", [10, 500])
def test_a_chunk_is_one_statement_whatever_its_size(user, size, django_assert_num_queries):
    batch = uuid.uuid4()
    with django_assert_num_queries(1):
        counts = upsert(user, batch, items=items(size))
    assert counts.inserted == size
    with django_assert_num_queries(1):
        counts = upsert(user, batch, items=items(size, version=2))
    assert counts.updated == size
