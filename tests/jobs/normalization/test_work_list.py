"""Normalization's work list (PendingRawEvent): every raw event written `pending` is on it, a
normalized or failed one is not, and normalization's outcome update of a raw event is a HOT
update (no index entry written), which it could not be while `status` was in an index."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, transaction

from jobs.models import PendingRawEvent, RawEvent
from jobs.normalization.selectors import normalization_summary, raw_events_pending_exist
from jobs.normalization.services import (
    raw_events_normalize,
    raw_events_normalize_chunk,
    raw_events_reset,
)
from jobs.sync.raw_events import RawItem, raw_events_upsert
from tests.fixtures.db_locks import DatabaseThread


def store(user, payloads, *, batch_id=None, status="pending") -> uuid.UUID:
    batch_id = batch_id or uuid.uuid4()
    RawEvent.objects.bulk_create(
        RawEvent(
            user=user,
            provider="gmail",
            source_id=p["id"],
            payload=p,
            batch_id=batch_id,
            status=status,
        )
        for p in payloads
    )
    return batch_id


def work_list(user) -> dict[str, uuid.UUID]:
    """source id -> batch of the user's raw events on the work list."""
    return {
        row.raw_event.source_id: row.batch_id
        for row in PendingRawEvent.objects.filter(user=user).select_related("raw_event")
    }


def hot_updates_of_raw_events() -> tuple[int, int]:
    """(updates, HOT updates) of the raw-event table in this transaction so far."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_updated(%s::regclass),"
            "       pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
            [RawEvent._meta.db_table] * 2,
        )
        return cursor.fetchone()


@pytest.mark.django_db
def test_raw_events_written_pending_are_listed_with_their_batch_and_others_are_not(
    user, other_user, generated_messages
):
    batch = store(user, generated_messages[:3])
    store(user, generated_messages[3:5], status="normalized")
    other_batch = store(other_user, generated_messages[:1])

    assert work_list(user) == {m["id"]: batch for m in generated_messages[:3]}
    assert work_list(other_user) == {generated_messages[0]["id"]: other_batch}
    assert raw_events_pending_exist(user_id=user.pk, provider="gmail", batch_id=batch)
    assert not raw_events_pending_exist(user_id=user.pk, provider="gmail", batch_id=other_batch)
    assert normalization_summary(user_id=user.pk)["pendingRawEvents"] == 3


@pytest.mark.django_db
def test_normalizing_takes_rows_off_the_list_with_hot_updates_only(user, generated_messages):
    store(user, generated_messages[:40])
    updates_before, hot_before = hot_updates_of_raw_events()

    report = raw_events_normalize(user_id=user.pk, provider="gmail", chunk_size=15)

    updates, hot = hot_updates_of_raw_events()
    assert (report.fetched, report.failed) == (40, 0)
    assert work_list(user) == {}
    assert set(RawEvent.objects.filter(user=user).values_list("status", flat=True)) == {
        "normalized"
    }
    # every outcome update kept its row version on its page and wrote no index entry
    assert (updates - updates_before, hot - hot_before) == (40, 40)


@pytest.mark.django_db
def test_a_failure_leaves_the_list_and_normalize_again_puts_it_back(user, generated_messages):
    store(user, [generated_messages[0], {"id": "broken"}])

    report = raw_events_normalize(user_id=user.pk, provider="gmail")

    assert (report.fetched, report.failed) == (2, 1)
    assert work_list(user) == {}
    failed = RawEvent.objects.filter(user=user).failed()
    assert list(failed.values_list("source_id", flat=True)) == ["broken"]
    assert normalization_summary(user_id=user.pk) == {
        "interactions": 1,
        "failedNormalizations": 1,
        "pendingRawEvents": 0,
    }

    assert raw_events_reset(user_id=user.pk, providers=["gmail"], failed_only=True) == 1

    assert list(work_list(user)) == ["broken"]
    assert not RawEvent.objects.filter(user=user).failed().exists()


@pytest.mark.django_db
def test_a_changed_payload_from_the_sync_queues_the_row_again_in_its_new_batch(
    user, generated_messages
):
    message = generated_messages[0]
    store(user, [message])
    raw_events_normalize(user_id=user.pk, provider="gmail")
    assert work_list(user) == {}

    same = RawItem(source_id=message["id"], occurred_at=None, payload=message)
    raw_events_upsert(
        user_id=user.pk, account_id=None, provider="gmail", batch_id=uuid.uuid4(), items=[same]
    )
    assert work_list(user) == {}  # unchanged: nothing to do

    changed = RawItem(
        source_id=message["id"], occurred_at=None, payload={**message, "labelIds": ["TRASH"]}
    )
    new_batch = uuid.uuid4()
    raw_events_upsert(
        user_id=user.pk, account_id=None, provider="gmail", batch_id=new_batch, items=[changed]
    )
    assert work_list(user) == {message["id"]: new_batch}

    RawEvent.objects.filter(user=user).delete()
    assert not PendingRawEvent.objects.filter(user=user).exists()


@pytest.mark.django_db(transaction=True)
def test_a_sync_rewriting_a_claimed_raw_event_waits_for_the_chunk_then_queues_it_again(
    user, generated_messages
):
    """The chunk locks the claimed raw events as well as their list rows: the sync's update
    waits on the raw event (before its trigger touches the list), so neither waits on the
    other (no deadlock), and the rewritten raw event is queued again once the chunk commits."""
    message = generated_messages[0]
    batch = store(user, [message])
    claimed = threading.Event()
    finish_chunk = threading.Event()

    class Pause:
        # the chunk's parsing turn: claimed, not yet written
        def __enter__(self) -> None:
            claimed.set()
            assert finish_chunk.wait(20)

        def __exit__(self, *exc: object) -> None:
            return None

    changed = RawItem(
        source_id=message["id"], occurred_at=None, payload={**message, "labelIds": ["TRASH"]}
    )
    new_batch = uuid.uuid4()

    def sync() -> None:
        with transaction.atomic():
            raw_events_upsert(
                user_id=user.pk,
                account_id=None,
                provider="gmail",
                batch_id=new_batch,
                items=[changed],
            )

    normalizing = DatabaseThread(
        lambda: raw_events_normalize_chunk(
            user_id=user.pk, provider="gmail", chunk_size=10, parsing_turn=Pause()
        )
    )
    syncing = DatabaseThread(sync)
    try:
        normalizing.start()
        assert claimed.wait(20)
        syncing.start()
        assert syncing.wait_until_blocked() == "transactionid"  # on the claimed raw event
    finally:
        finish_chunk.set()
        normalizing.join(30)
        syncing.join(30)
    assert (normalizing.error, syncing.error) == (None, None)
    assert work_list(user) == {message["id"]: new_batch}
    raw = RawEvent.objects.get(user=user)
    assert (raw.status, raw.payload["labelIds"], raw.batch_id) == ("pending", ["TRASH"], new_batch)
    assert batch != new_batch
