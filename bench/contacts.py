"""Benchmark: extract_contacts + write_timeline + update_rollups vs COPY of the same rows, one run.

    DEBUG=1 .venv/bin/python bench/contacts.py [--interactions 50000] [--chunk-size 500]

Runs in a throwaway database (bench_contacts_<pid>, created and migrated on the configured
server, dropped at the end). Ours: the three stages' services over generated interactions
(about 4 other people each), chunk by chunk, each chunk in its own transaction, as their jobs
run them. Baseline: COPY of the participant and timeline rows ours wrote into empty tables
with the same indexes, best of three. participants_per_s = participants / ours' total time,
copy_per_s = participants / the COPY time of both tables. Prints progress per phase and, as
the last line, one JSON object: {"interactions", "participants", "contacts",
"timeline_events", "participants_per_s", "copy_per_s", "ratio", "statements_per_chunk",
"seconds"}; statements_per_chunk lists the distinct counts seen per stage, BEGIN and COMMIT
included.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Running as a script puts bench/ first on sys.path, where bench/queue.py shadows stdlib `queue`.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_pipeline.settings")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from contacts.models import Contact, InteractionParticipant  # noqa: E402
from contacts.rollups import contact_rollups_refresh, touched_contact_ids  # noqa: E402
from contacts.services.extract import ExtractReport, contacts_extract  # noqa: E402
from jobs.models import GoogleAccount, Interaction  # noqa: E402
from timeline.models import TimelineEvent  # noqa: E402
from timeline.services import TimelineReport, timeline_events_write  # noqa: E402

OWNER = "alex.morgan@pipeline.example"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PEOPLE = 8_000
COMPANIES = 400
FIRST = [
    "Ada",
    "Alan",
    "Ana",
    "Ben",
    "Carla",
    "Chen",
    "Dara",
    "Eli",
    "Eva",
    "Finn",
    "Gita",
    "Hana",
    "Ivan",
    "Jane",
    "Jon",
    "Kai",
    "Lena",
    "Liam",
    "Mara",
    "Mo",
    "Nia",
    "Omar",
    "Pia",
    "Raj",
    "Rosa",
    "Sam",
    "Tara",
    "Uma",
    "Vic",
    "Wen",
    "Yara",
    "Zoe",
]
# surnames of two syllables: 900 of them
SYLLABLES = [
    "ab",
    "ber",
    "cos",
    "di",
    "ev",
    "fi",
    "gar",
    "haa",
    "ito",
    "jen",
    "kha",
    "lo",
    "mey",
    "no",
    "oka",
    "pat",
    "qui",
    "ros",
    "sil",
    "ta",
    "ue",
    "vo",
    "wa",
    "xu",
    "yo",
    "za",
    "bel",
    "mur",
    "tin",
    "sen",
]
COPY_RUNS = 3
PARTICIPANT_COPY = "bench_participant_copy"
TIMELINE_COPY = "bench_timeline_copy"
PARTICIPANT_COLUMNS = (
    "user_id, interaction_id, contact_id, identity_id, role, response_status, occurred_at"
)
TIMELINE_COLUMNS = (
    "user_id, contact_id, interaction_id, event_type, occurred_at, title, data, created_at, "
    "updated_at"
)


def say(message: str) -> None:
    print(message, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=50_000)
    parser.add_argument("--chunk-size", type=int, default=500)
    args = parser.parse_args()

    connection.settings_dict["TEST"]["NAME"] = f"bench_contacts_{os.getpid()}"
    original_name = connection.settings_dict["NAME"]
    database = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    say(f"created and migrated throwaway database {database}")
    try:
        result = run(args.interactions, args.chunk_size)
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)
        say(f"dropped {database}")
    print(json.dumps(result))


def people(rng: random.Random) -> list[dict[str, str]]:
    """PEOPLE addresses: most at COMPANIES company domains, some at gmail.com."""
    found = []
    for n in range(PEOPLE):
        first = rng.choice(FIRST)
        last = (rng.choice(SYLLABLES) + rng.choice(SYLLABLES)).title()
        if n % 10 == 0:
            address = f"{first.lower()}.{last.lower()}{n}@gmail.com"
        else:
            address = f"{first.lower()}.{last.lower()}.{n}@company{n % COMPANIES}.example"
        found.append({"email": address, "name": f"{first} {last}"})
    return found


def interactions(user, count: int, seed: int = 7) -> list[Interaction]:
    """`count` interactions over two years: 55% inbound and 35% outbound e-mail with four
    other people each (one of whom an own address, on inbound mail, does not count), 10%
    meetings the owner organises with four attendees."""
    rng = random.Random(seed)
    pool = people(rng)
    owner = {"email": OWNER, "name": "Alex Morgan"}
    rows = []
    for n in range(count):
        at = NOW - timedelta(minutes=rng.randrange(0, 2 * 365 * 24 * 60))
        # people cluster: mail goes to colleagues at one company most of the time
        base = rng.randrange(PEOPLE)
        group = [pool[(base + k * COMPANIES) % PEOPLE] for k in range(4)]
        roll = rng.random()
        if roll < 0.10:
            responses = ("accepted", "declined", "tentative", "needsAction")
            rows.append(
                Interaction(
                    user=user,
                    source="calendar",
                    source_id=f"primary/e{n}",
                    kind="meeting",
                    occurred_at=at,
                    subject=f"Meeting {n}",
                    metadata={
                        "organizer": {**owner, "self": True},
                        "attendees": [
                            {**owner, "response_status": "accepted", "self": True},
                            *({**p, "response_status": rng.choice(responses)} for p in group),
                        ],
                        "cancelled": rng.random() < 0.05,
                        "meeting_link": f"https://meet.example/{n}",
                        "duration_s": 1800,
                    },
                )
            )
            continue
        outbound = roll < 0.45
        sender, *others = group if not outbound else [owner, *group]
        to, cc = (others[:3], others[3:]) if outbound else ([owner, *others[:2]], others[2:])
        rows.append(
            Interaction(
                user=user,
                source="gmail",
                source_id=f"msg{n:08x}",
                kind="email_outbound" if outbound else "email_inbound",
                occurred_at=at,
                subject=f"Subject {n}",
                thread_id=f"thread{n // 3}",
                direction="outbound" if outbound else "inbound",
                metadata={
                    "from": sender,
                    "to": to,
                    "cc": cc,
                    "message_id": f"<{n}@mail.example>",
                    "labels": ["SENT"] if outbound else ["INBOX"],
                    "snippet": f"About subject {n} ...",
                },
            )
        )
    return Interaction.objects.bulk_create(rows, batch_size=2000)


def run(count: int, chunk_size: int) -> dict:
    user = get_user_model().objects.create_user("bench", email="bench@example.com")
    GoogleAccount.objects.create(user=user, email=OWNER, addresses=[OWNER])
    started = time.perf_counter()
    ids = sorted(i.pk for i in interactions(user, count))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Interaction._meta.db_table}")
    say(f"inserted {len(ids)} interactions in {time.perf_counter() - started:.1f} s")

    statements: dict[str, list[int]] = {
        "extract_contacts": [],
        "write_timeline": [],
        "update_rollups": [],
    }

    # (a) ours: the three stages, chunk by chunk, each chunk its own transaction, as the jobs run
    started = time.perf_counter()
    done = 0

    def on_chunk(so_far: ExtractReport) -> None:
        nonlocal done
        # the first chunk's count includes the user's own addresses, read once per run
        statements["extract_contacts"].append(len(captured.captured_queries) - done)
        done = len(captured.captured_queries)

    with CaptureQueriesContext(connection) as captured:
        extract = contacts_extract(
            user_id=user.pk, interaction_ids=ids, chunk_size=chunk_size, on_chunk=on_chunk
        )
    extract_s = time.perf_counter() - started
    participants = InteractionParticipant.objects.filter(user=user).count()
    say(
        f"extract_contacts: {extract.interactions} interactions in {extract.chunks} chunks, "
        f"{extract_s:.2f} s: {extract.seen} addresses seen, {participants} participants, "
        f"{extract.contacts_created} contacts, {extract.suggestions_created} suggestions, "
        f"excluded {dict(extract.excluded)}"
    )

    started = time.perf_counter()
    timeline = TimelineReport()
    for start in range(0, len(ids), chunk_size):
        with CaptureQueriesContext(connection) as captured, transaction.atomic():
            timeline.add(
                timeline_events_write(
                    user_id=user.pk, interaction_ids=ids[start : start + chunk_size]
                )
            )
        statements["write_timeline"].append(len(captured.captured_queries))
    timeline_s = time.perf_counter() - started
    say(
        f"write_timeline: {timeline.events} events in {timeline.chunks} chunks, "
        f"{timeline_s:.2f} s: {timeline.inserted} inserted"
    )

    started = time.perf_counter()
    contacts = touched_contact_ids(user_id=user.pk, interaction_ids=ids)
    changed = 0
    for start in range(0, len(contacts), chunk_size):
        with CaptureQueriesContext(connection) as captured, transaction.atomic():
            changed += contact_rollups_refresh(
                user_id=user.pk, contact_ids=contacts[start : start + chunk_size], now=NOW
            )
        statements["update_rollups"].append(len(captured.captured_queries))
    rollups_s = time.perf_counter() - started
    say(f"update_rollups: {len(contacts)} contacts, {changed} changed, {rollups_s:.2f} s")
    ours_s = extract_s + timeline_s + rollups_s

    # idempotence check (not timed): a second pass writes nothing
    again = timeline_events_write(user_id=user.pk, interaction_ids=ids[:chunk_size])
    refreshed = contact_rollups_refresh(user_id=user.pk, contact_ids=contacts[:chunk_size], now=NOW)
    if again.inserted or again.updated or refreshed:
        raise SystemExit("a rerun changed rows")
    events = TimelineEvent.objects.filter(user=user).count()
    if events != timeline.inserted or participants != extract.inserted:
        raise SystemExit("counts do not match the tables")

    # (b) baseline: COPY the participant and timeline rows ours produced into empty copies of
    # their tables (same indexes and unique constraints; no foreign keys), best of COPY_RUNS:
    # the machine is shared, and the fastest COPY is the strictest baseline
    copy_s = 0.0
    for table, model, columns in (
        (PARTICIPANT_COPY, InteractionParticipant, PARTICIPANT_COLUMNS),
        (TIMELINE_COPY, TimelineEvent, TIMELINE_COLUMNS),
    ):
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {columns.replace('data', 'data::text')} FROM {model._meta.db_table} "
                "WHERE user_id = %s",
                [user.pk],
            )
            rows = cursor.fetchall()
        runs = []
        for _ in range(COPY_RUNS):
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {table}")
                cursor.execute(f"CREATE TABLE {table} (LIKE {model._meta.db_table} INCLUDING ALL)")
            raw_connection: psycopg.Connection = connection.connection
            started = time.perf_counter()
            with (
                raw_connection.transaction(),
                psycopg.Cursor(raw_connection) as copy_cursor,
                copy_cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            runs.append(time.perf_counter() - started)
        copy_s += min(runs)
        say(
            f"copy {model.__name__}: {len(rows)} rows in "
            + ", ".join(f"{seconds:.2f}" for seconds in runs)
            + f" s (best {min(runs):.2f} s)"
        )

    participants_per_s = participants / ours_s
    copy_per_s = participants / copy_s
    say(
        f"ours {ours_s:.2f} s ({participants_per_s:,.0f} participants/s): extract "
        f"{extract_s / ours_s:.0%}, timeline {timeline_s / ours_s:.0%}, rollups "
        f"{rollups_s / ours_s:.0%}; copy {copy_s:.2f} s ({copy_per_s:,.0f}/s)"
    )
    return {
        "interactions": len(ids),
        "participants": participants,
        "contacts": Contact.objects.filter(user=user).count(),
        "timeline_events": events,
        "participants_per_s": round(participants_per_s),
        "copy_per_s": round(copy_per_s),
        "ratio": round(participants_per_s / copy_per_s, 3),
        "statements_per_chunk": {
            stage: sorted(set(counts)) for stage, counts in statements.items()
        },
        "seconds": {
            "extract_contacts": round(extract_s, 2),
            "write_timeline": round(timeline_s, 2),
            "update_rollups": round(rollups_s, 2),
            "copy": round(copy_s, 2),
        },
    }


if __name__ == "__main__":
    main()
