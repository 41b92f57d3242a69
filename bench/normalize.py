"""Benchmark: normalization (raw events -> interactions) against COPY of the same rows, one run.

    DEBUG=1 .venv/bin/python bench/normalize.py [--messages 20000] [--chunk-size 500] [--lanes N]
                                                [--repeat 3]

Each of `--repeat` rounds runs in a throwaway database of its own (bench_normalize_<pid>,
created and migrated on the configured server, dropped at the end of the round), so every
round starts from the same state; ours and COPY are timed in the same round and the ratio is
taken per round. Prints progress per phase and round and, as the last line, one JSON object:
{"messages", "lanes", "chunk_size", "rounds", "normalize_per_s", "copy_per_s", "ratio",
"ratios", "wal_mb"}: the medians over the rounds, each round's ratio, and the WAL normalization
wrote (MB, median). It stops with an error, and prints no figures, unless every raw event was
normalized (none failed, none left pending) into exactly one interaction each, in every round:
a failure must not count as speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Running as a script puts bench/ first on sys.path, where bench/queue.py shadows stdlib `queue`.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_pipeline.settings")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402

from google_emulator.generator import generate_mailbox  # noqa: E402
from jobs.config import get_config  # noqa: E402
from jobs.models import GoogleAccount, Interaction, NormalizationStatus, RawEvent  # noqa: E402
from jobs.normalization.gmail import parse_gmail_message  # noqa: E402
from jobs.normalization.services import (  # noqa: E402
    NormalizationReport,
    raw_events_normalize,
)
from jobs.normalization.services import _loads as normalization_loads  # noqa: E402
from jobs.normalization.services import _row_json as normalization_row_json  # noqa: E402
from jobs.sync.convert import gmail_message_from_rfc822  # noqa: E402

OWNER = "alex.morgan@pipeline.example"
ALIAS = "alex@pipeline.example"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
COPY_TABLE = "bench_interaction_copy"
# The columns normalization writes (the id comes from the table's sequence in both runs).
COPY_COLUMNS = (
    "user_id, source, source_id, kind, occurred_at, occurred_at_estimated, subject, body_text, "
    "thread_id, direction, metadata, created_at, updated_at"
)


def say(message: str) -> None:
    print(message, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument(
        "--lanes", type=int, default=None, help="chunk loops side by side (default: the setting)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    args = parser.parse_args()
    if args.messages < 1 or args.chunk_size < 1 or args.repeat < 1:
        parser.error("--messages, --chunk-size and --repeat must be at least 1")

    started = time.perf_counter()
    mailbox = generate_mailbox(OWNER, messages=args.messages, seed=11, now=NOW, aliases=(ALIAS,))
    payloads = [
        gmail_message_from_rfc822(
            m.raw, label_ids=list(m.label_ids), internal_date_ms=m.internal_date_ms
        )
        for m in mailbox.messages
    ]
    del mailbox
    say(f"generated {len(payloads)} Gmail payloads in {time.perf_counter() - started:.1f} s")

    rounds = []
    for number in range(1, args.repeat + 1):
        connection.settings_dict["TEST"]["NAME"] = f"bench_normalize_{os.getpid()}"
        original_name = connection.settings_dict["NAME"]
        database = connection.creation.create_test_db(
            verbosity=0, autoclobber=True, serialize=False
        )
        say(f"round {number}/{args.repeat}: created and migrated throwaway database {database}")
        try:
            rounds.append(run(payloads, args.chunk_size, args.lanes))
        finally:
            connection.creation.destroy_test_db(original_name, verbosity=0)
            say(f"round {number}/{args.repeat}: dropped {database}")
        say(f"round {number}/{args.repeat}: ratio {rounds[-1]['ratio']}")
    ratios = [r["ratio"] for r in rounds]
    print(
        json.dumps(
            {
                "messages": len(payloads),
                "lanes": rounds[0]["lanes"],
                "chunk_size": args.chunk_size,
                "rounds": len(rounds),
                "normalize_per_s": round(statistics.median(r["normalize_per_s"] for r in rounds)),
                "copy_per_s": round(statistics.median(r["copy_per_s"] for r in rounds)),
                "ratio": round(statistics.median(ratios), 3),
                "ratios": ratios,
                "wal_mb": round(statistics.median(r["wal_mb"] for r in rounds), 1),
            }
        )
    )


def run(payloads: list[dict], chunk_size: int, lanes: int | None = None) -> dict[str, Any]:
    """One round in the current (fresh) database: store, normalize, check, COPY, profile."""
    user = get_user_model().objects.create_user("bench", email="bench@example.com")
    account = GoogleAccount.objects.create(user=user, email=OWNER, addresses=[OWNER, ALIAS])
    batch_id = uuid.uuid4()
    started = time.perf_counter()
    RawEvent.objects.bulk_create(
        (
            RawEvent(
                user=user,
                account=account,
                provider="gmail",
                source_id=payload["id"],
                payload=payload,
                batch_id=batch_id,
            )
            for payload in payloads
        ),
        batch_size=1000,
    )
    with connection.cursor() as cursor:
        # planner statistics, as autovacuum keeps them (no VACUUM: the sync leaves fresh rows)
        cursor.execute(f"ANALYZE {RawEvent._meta.db_table}")
    say(f"inserted {len(payloads)} pending raw events in {time.perf_counter() - started:.1f} s")

    # (a) ours: raw events -> interactions, chunk by chunk, as the processor runs it
    wal_before = wal_position()
    started = time.perf_counter()
    report = raw_events_normalize(
        user_id=user.pk, provider="gmail", batch_id=batch_id, chunk_size=chunk_size, lanes=lanes
    )
    ours_s = time.perf_counter() - started
    wal_mb = wal_since(wal_before) / 1e6
    lanes = lanes or get_config().normalize_lanes
    say(
        f"normalize ({lanes} lanes): {report.fetched} raw events in {report.chunks} chunks, "
        f"{ours_s:.2f} s ({report.fetched / ours_s:,.0f}/s): {report.inserted} inserted, "
        f"{report.updated} updated, {report.unchanged} unchanged, {report.failed} failed; "
        f"{wal_mb:.1f} MB of WAL written"
    )
    check_everything_normalized(user, len(payloads), report)

    # (b) baseline: COPY the rows ours produced into an empty copy of the interaction table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {COPY_COLUMNS.replace('metadata', 'metadata::text')} "
            f"FROM {Interaction._meta.db_table} WHERE user_id = %s",
            [user.pk],
        )
        rows = cursor.fetchall()
        cursor.execute(
            f"CREATE TABLE {COPY_TABLE} (LIKE {Interaction._meta.db_table} INCLUDING ALL)"
        )
    raw_connection: psycopg.Connection = connection.connection
    started = time.perf_counter()
    with (
        raw_connection.transaction(),
        psycopg.Cursor(raw_connection) as copy_cursor,
        copy_cursor.copy(f"COPY {COPY_TABLE} ({COPY_COLUMNS}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)
    copy_s = time.perf_counter() - started
    say(f"copy: {len(rows)} rows in {copy_s:.2f} s ({len(rows) / copy_s:,.0f}/s)")

    # where ours spends its time: decoding, parsing and encoding alone, as normalization does
    # them (same payloads and codec, no database)
    own = account.own_addresses
    texts = [json.dumps(payload) for payload in payloads]
    started = time.perf_counter()
    for text in texts:
        parsed = parse_gmail_message(normalization_loads(text), own_addresses=own, fetched_at=NOW)
        normalization_row_json(parsed)
    parse_s = time.perf_counter() - started
    say(
        f"profile: json decode + parse + row encode {parse_s:.2f} s "
        f"({parse_s / ours_s:.0%} of normalize; with more than one lane, claims, writes and "
        f"commits overlap it)"
    )
    normalize_per_s = report.fetched / ours_s
    copy_per_s = len(rows) / copy_s
    return {
        "messages": len(payloads),
        "lanes": lanes,
        "chunk_size": chunk_size,
        "normalize_per_s": round(normalize_per_s),
        "copy_per_s": round(copy_per_s),
        "ratio": round(normalize_per_s / copy_per_s, 3),
        "wal_mb": round(wal_mb, 1),
    }


def wal_position() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()")
        return cursor.fetchone()[0]


def wal_since(position: str) -> int:
    """Bytes of WAL the server wrote since `position` (every session's: the bench runs alone)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", [position])
        return int(cursor.fetchone()[0])


def check_everything_normalized(user: Any, messages: int, report: NormalizationReport) -> None:
    """Stop the bench unless every raw event became exactly one interaction, none failed."""
    statuses = {
        row["status"]: row["n"]
        for row in RawEvent.objects.filter(user=user).values("status").annotate(n=Count("id"))
    }
    interactions = Interaction.objects.filter(user=user).count()
    problems = []
    if (report.fetched, report.inserted, report.failed) != (messages, messages, 0):
        problems.append(
            f"the report reads {report.fetched} fetched, {report.inserted} inserted, "
            f"{report.failed} failed (expected {messages}, {messages}, 0)"
        )
    if statuses != {NormalizationStatus.NORMALIZED: messages}:
        problems.append(f"raw events by status: {statuses} (expected all {messages} normalized)")
    if interactions != messages:
        problems.append(f"{interactions} interactions for {messages} messages")
    if problems:
        raise SystemExit("normalization did not do all the work: " + "; ".join(problems))


if __name__ == "__main__":
    main()
