"""Normalization lanes (chunk loops side by side, one connection each) and the JSON codec.

The lanes must write exactly what one loop writes, keep every chunk whole (fence, cancel and
deadline between chunks), let a payload that breaks the parser fail alone, and close the
connections they opened. The orjson-backed codec must read and write what json does.
"""

from __future__ import annotations

import gc
import json
import threading
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.enqueue import enqueue
from jobs.errors import JobCancelled, LeaseLost
from jobs.models import Interaction, Job, RawEvent
from jobs.normalization import services
from jobs.normalization.services import NormalizationReport, raw_events_normalize
from jobs.normalization.types import ParsedInteraction
from jobs.runner import run_due_jobs

POISON = [{"id": "x"}, ["a", "list"], {"id": "y", "payload": "not an object"}]


@pytest.fixture(scope="module")
def messages(generated_messages) -> list[dict]:
    return list(generated_messages[:120])


def store(user, payloads, *, batch_id=None, account=None) -> uuid.UUID:
    batch_id = batch_id or uuid.uuid4()
    RawEvent.objects.bulk_create(
        RawEvent(
            user=user,
            account=account,
            provider="gmail",
            source_id=str(p["id"]) if isinstance(p, dict) else f"list-{n}",
            payload=p,
            batch_id=batch_id,
        )
        for n, p in enumerate(payloads)
    )
    return batch_id


def snapshot(user) -> dict:
    """What normalization left for the user: interactions and raw-event outcomes, by key."""
    interactions = {
        row["source_id"]: row
        for row in Interaction.objects.filter(user=user).values(
            "source",
            "source_id",
            "kind",
            "occurred_at",
            "occurred_at_estimated",
            "subject",
            "body_text",
            "thread_id",
            "direction",
            "metadata",
        )
    }
    outcomes = {
        source_id: (status, error)
        for source_id, status, error in RawEvent.objects.filter(user=user).values_list(
            "source_id", "status", "error"
        )
    }
    return {"interactions": interactions, "outcomes": outcomes}


def backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def consistent(user) -> None:
    """Every chunk whole: each normalized raw event has its interaction and no other exists."""
    normalized = set(
        RawEvent.objects.filter(user=user, status="normalized").values_list("source_id", flat=True)
    )
    written = set(Interaction.objects.filter(user=user).values_list("source_id", flat=True))
    assert normalized == written


@pytest.mark.django_db(transaction=True)
def test_lanes_write_exactly_what_one_loop_writes_and_close_their_connections(
    user, other_user, messages, monkeypatch
):
    real_parse = services.parse_gmail_message

    def parse(message, **kwargs):
        if message.get("id") == messages[7]["id"]:
            raise ValueError("boom")
        return real_parse(message, **kwargs)

    monkeypatch.setattr(services, "parse_gmail_message", parse)
    store(user, [*messages, *POISON])
    store(other_user, [*messages, *POISON])
    before = backends()
    lanes_seen = set()

    def on_chunk(chunk) -> None:
        lanes_seen.add(threading.current_thread().name)

    one = raw_events_normalize(user_id=user.pk, provider="gmail", chunk_size=7, lanes=1)
    three = raw_events_normalize(
        user_id=other_user.pk, provider="gmail", chunk_size=7, lanes=3, on_chunk=on_chunk
    )

    counts = ("fetched", "inserted", "updated", "unchanged", "failed")
    assert [getattr(three, name) for name in counts] == [getattr(one, name) for name in counts]
    assert (one.fetched, one.inserted, one.failed) == (123, 119, 4)
    # 123 rows in chunks of 7: 18 for one loop. Lanes claiming at the same moment near the end
    # split what is left between them (SKIP LOCKED), so three lanes take 18 to 20 chunks.
    assert one.chunks == 18
    assert 18 <= three.chunks <= 18 + 2
    assert snapshot(other_user) == snapshot(user)
    assert snapshot(user)["outcomes"][messages[7]["id"]] == ("failed", "ValueError: boom")
    assert len(lanes_seen) >= 2  # the helper lanes took chunks too
    assert backends() == before  # the helper lanes closed their connections


@pytest.mark.django_db(transaction=True)
def test_a_lost_lease_stops_every_lane_and_leaves_no_chunk_half_written(user, messages):
    store(user, messages)
    calls = []
    lock = threading.Lock()

    def fence() -> None:
        with lock:
            calls.append(threading.current_thread().name)
            if len(calls) > 4:
                raise LeaseLost("taken over")

    with pytest.raises(LeaseLost):
        raw_events_normalize(user_id=user.pk, provider="gmail", chunk_size=10, lanes=2, fence=fence)

    normalized = RawEvent.objects.filter(user=user, status="normalized").count()
    assert normalized == 40  # the four fenced chunks, whole; nothing after the lost lease
    assert RawEvent.objects.filter(user=user, status="pending").count() == 80
    consistent(user)


@pytest.mark.django_db(transaction=True)
def test_should_stop_stops_every_lane_between_chunks(user, messages):
    store(user, messages)
    committed: list[NormalizationReport] = []

    def should_stop() -> bool:
        return len(committed) >= 3

    report = raw_events_normalize(
        user_id=user.pk,
        provider="gmail",
        chunk_size=10,
        lanes=2,
        should_stop=should_stop,
        on_chunk=committed.append,
    )

    assert report.stopped
    # each lane ends the chunk it is in: at most one chunk per other lane after the third
    assert 3 <= report.chunks <= 4 and report.chunks == len(committed)
    assert report.fetched == sum(chunk.fetched for chunk in committed) == 10 * report.chunks
    assert RawEvent.objects.filter(user=user, status="pending").count() == 120 - report.fetched
    consistent(user)


@pytest.mark.django_db(transaction=True)
def test_a_cancel_raised_between_chunks_reaches_the_caller(user, messages):
    store(user, messages)
    committed: list[NormalizationReport] = []

    def should_stop() -> bool:
        if len(committed) >= 2:
            raise JobCancelled("cancelled by an operator")
        return False

    with pytest.raises(JobCancelled):
        raw_events_normalize(
            user_id=user.pk,
            provider="gmail",
            chunk_size=10,
            lanes=2,
            should_stop=should_stop,
            on_chunk=committed.append,
        )
    assert 2 <= len(committed) <= 3
    assert RawEvent.objects.filter(user=user, status="normalized").count() == 10 * len(committed)
    consistent(user)


@pytest.mark.django_db
def test_inside_a_transaction_one_lane_runs_and_takes_every_row(user, messages):
    # the test's transaction: helper connections would see no rows and end the run early
    store(user, messages[:50])
    report = raw_events_normalize(user_id=user.pk, provider="gmail", chunk_size=10, lanes=3)
    assert (report.fetched, report.inserted, report.chunks) == (50, 50, 5)
    assert not RawEvent.objects.filter(user=user, status="pending").exists()


@pytest.mark.django_db(transaction=True)
def test_a_normalize_job_runs_its_lanes_and_counts_every_chunk(
    user, account, messages, pipeline_config, monkeypatch
):
    pipeline_config(handoff="none", normalize_chunk_size=10, normalize_lanes=3)
    lanes_seen = set()
    real_work = services.raw_events_normalize_chunk

    def work(**kwargs):
        lanes_seen.add(threading.current_thread().name)
        return real_work(**kwargs)

    monkeypatch.setattr(services, "raw_events_normalize_chunk", work)
    batch = store(user, [*messages, *POISON], account=account)
    enqueue(
        "normalize_gmail",
        user=user,
        payload={"account_id": account.pk},
        batch_id=batch,
        dedupe_key=f"normalize_gmail:{batch}",
    )
    run_due_jobs(until_empty=True)
    job = Job.objects.get(kind="normalize_gmail")
    assert job.status == "succeeded"
    assert (job.metrics["itemsFetched"], job.metrics["itemsInserted"]) == (123, 120)
    assert RawEvent.objects.filter(user=user, status="failed").count() == 3
    assert len(lanes_seen) >= 2
    consistent(user)


# --- the JSON codec: orjson where it reads and writes what json does -----------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def exact(value: object) -> str:
    """A rendering that tells 1 from 1.0 and keeps big integers whole."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([(", ", ": "), (",", ":")]))
def test_loads_reads_what_json_reads(value, separators):
    text = json.dumps(value, ensure_ascii=False, separators=separators)
    assert exact(services._loads(text)) == exact(json.loads(text))
    # as the claim reads payloads: jsonb's text as UTF-8 bytes
    assert exact(services._loads(text.encode())) == exact(json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        "123456789012345678901234567890",
        "-9223372036854775809",
        '{"size": 18446744073709551616}',
        "[1e400, -1e400]",
        '{"a": [1, 2.5, 12345678901234567890]}',
    ],
)
def test_loads_keeps_what_orjson_would_read_differently(text):
    assert exact(services._loads(text)) == exact(json.loads(text))


def test_loads_raises_what_json_raises():
    with pytest.raises(json.JSONDecodeError) as caught:
        services._loads('{"a": ')
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads('{"a": ')
    assert str(caught.value) == str(expected.value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), st.text(max_size=20))
def test_row_json_writes_what_json_writes(metadata, subject):
    parsed = ParsedInteraction(
        source="gmail",
        source_id="m1",
        kind="email_inbound",
        occurred_at=datetime(2025, 3, 1, 12, 30, 5, 250000, tzinfo=UTC),
        occurred_at_estimated=False,
        subject=subject,
        body_text="body",
        thread_id="t1",
        direction="inbound",
        metadata=metadata,
    )
    row = json.loads(services._row_json(parsed))
    assert exact(row.pop("metadata")) == exact(metadata)
    assert datetime.fromisoformat(row.pop("occurred_at")) == parsed.occurred_at
    assert row == {
        "source": "gmail",
        "source_id": "m1",
        "kind": "email_inbound",
        "occurred_at_estimated": False,
        "subject": subject,
        "body_text": "body",
        "thread_id": "t1",
        "direction": "inbound",
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_as_it_was_after_a_run_even_a_failing_one(user, messages, enabled):
    store(user, [*messages[:40], *POISON])
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        report = raw_events_normalize(user_id=user.pk, provider="gmail", chunk_size=5, lanes=2)
        assert (report.fetched, report.failed) == (43, 3)
        assert gc.isenabled() is enabled

        def fence() -> None:
            raise LeaseLost("taken over")

        store(user, messages[40:50])
        with pytest.raises(LeaseLost):
            raw_events_normalize(user_id=user.pk, provider="gmail", lanes=2, fence=fence)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
