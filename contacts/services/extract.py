"""extract_contacts: a batch's interactions to identities, contacts, participants and duplicates.

Each chunk is one transaction with a bounded number of statements whatever its size (at most
10: every read and write is one set-based statement over the chunk, reaching rows by key).
Chunks of one user run one at a time (a transaction-scoped advisory lock), so two batches never
create the same contact twice.

What becomes a participant: every From, To, Cc, Bcc, Reply-To, organizer and attendee address of
a canonical interaction, unless a rule excludes it (contacts.identity.EXCLUDED_*, plus
``duplicate_interaction`` for every address of an interaction that is a copy of another,
``repeated`` for the same address twice in one role of one interaction). The counts add up:
``seen == linked + sum(excluded)``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.db import connection, transaction
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from rapidfuzz import fuzz, process
from rapidfuzz.utils import default_process

from contacts.conf import ContactsConfig, get_config
from contacts.identity import (
    EXCLUDED_BULK,
    EXCLUDED_INVALID,
    choose_display_name,
    clean_name,
    company_domain,
    exclusion_reason,
    matching_key,
    own_keys,
    readable_name,
)
from contacts.models import (
    Contact,
    ContactIdentity,
    InteractionDuplicate,
    InteractionParticipant,
    MergeSuggestion,
    ParticipantRole,
)
from jobs.locks import EXTRACT_LOCK_NAMESPACE, USER_LOCK_SQL, user_lock_params
from jobs.models import GoogleAccount, Interaction, RawEvent

EXCLUDED_DUPLICATE = "duplicate_interaction"
EXCLUDED_REPEATED = "repeated"
DUPLICATE_REASON = "same RFC Message-ID"

_I = Interaction._meta.db_table
_R = RawEvent._meta.db_table
_C = Contact._meta.db_table
_ID = ContactIdentity._meta.db_table
_P = InteractionParticipant._meta.db_table
_D = InteractionDuplicate._meta.db_table
_S = MergeSuggestion._meta.db_table

# The chunk's interactions with just the metadata extraction needs; the canonical interaction of
# each Message-ID (the earliest, lowest id, of the user's Gmail interactions with it, whichever
# was extracted first: contacts_interaction_msgid_idx; OFFSET 0 keeps the planner from turning
# min() into a walk of the primary key); and what only the raw payload knows:
# Gmail List-Unsubscribe / Precedence: bulk|list|junk, Calendar attendees marked resource.
_LOAD_SQL = f"""
SELECT i.id, i.source, i.kind, i.occurred_at,
       jsonb_build_object(
           'from', i.metadata->'from', 'to', i.metadata->'to', 'cc', i.metadata->'cc',
           'bcc', i.metadata->'bcc', 'reply_to', i.metadata->'reply_to',
           'organizer', i.metadata->'organizer', 'attendees', i.metadata->'attendees')::text,
       CASE WHEN i.source = 'gmail' AND (i.metadata->>'message_id') <> '' THEN
           (SELECT min(m.id)
              FROM (SELECT j.id FROM {_I} j
                     WHERE j.user_id = i.user_id AND j.source = 'gmail'
                           AND (j.metadata->>'message_id') = (i.metadata->>'message_id')
                    OFFSET 0) m)
       END,
       CASE WHEN i.source = 'gmail'
                 AND jsonb_typeof(r.payload->'payload'->'headers') = 'array' THEN
           EXISTS (SELECT 1 FROM jsonb_array_elements(r.payload->'payload'->'headers') h
                    WHERE lower(h->>'name') = 'list-unsubscribe'
                       OR (lower(h->>'name') = 'precedence'
                           AND lower(btrim(h->>'value')) IN ('bulk', 'list', 'junk')))
       ELSE false END,
       CASE WHEN i.source = 'calendar' AND jsonb_typeof(r.payload->'attendees') = 'array' THEN
           ARRAY(SELECT lower(a->>'email') FROM jsonb_array_elements(r.payload->'attendees') a
                  WHERE a->>'resource' = 'true')
       ELSE ARRAY[]::text[] END
  FROM {_I} i
  LEFT JOIN {_R} r
    ON r.user_id = i.user_id AND r.provider = i.source AND r.source_id = i.source_id
 WHERE i.user_id = %(user_id)s AND i.id = ANY(%(ids)s::int8[])
 ORDER BY i.id
"""

# Keys the user has written to (a To/Cc/Bcc of one of their sent e-mails).
_WRITTEN_TO_SQL = f"""
SELECT DISTINCT ci.key
  FROM {_ID} ci
  JOIN {_P} p ON p.identity_id = ci.id AND p.role IN ('to', 'cc', 'bcc')
  JOIN {_I} i ON i.id = p.interaction_id AND i.kind = 'email_outbound'
 WHERE ci.user_id = %(user_id)s AND ci.kind = 'email' AND ci.key = ANY(%(keys)s::text[])
"""

_IDENTITIES_SQL = f"""
SELECT id, key, contact_id FROM {_ID}
 WHERE user_id = %(user_id)s AND kind = 'email' AND key = ANY(%(keys)s::text[])
"""

# A new contact and its identity per new key, in one statement; the last row carries how many
# contacts were created (under the advisory lock, every new key's identity is inserted).
_INSERT_NEW_SQL = f"""
WITH s AS (
    SELECT * FROM unnest(%(names)s::text[], %(keys)s::text[], %(domains)s::text[],
                         %(froms)s::int8[], %(values)s::text[], %(seen)s::text[])
           WITH ORDINALITY AS s(n, k, d, f, v, seen, ord)
), c AS (
    INSERT INTO {_C} (user_id, display_name, primary_email, company_domain, created_from_id,
                      interaction_count, interactions_30d, interactions_90d, interactions_365d,
                      inbound_count, outbound_count, meeting_count, recent_interactions,
                      created_at, updated_at)
    SELECT %(user_id)s, n, k, d, f, 0, 0, 0, 0, 0, 0, 0, '[]'::jsonb,
           statement_timestamp(), statement_timestamp()
      FROM s ORDER BY ord
    RETURNING id, primary_email
), ins AS (
    INSERT INTO {_ID} (user_id, contact_id, kind, value, key, names, created_at)
    SELECT %(user_id)s, c.id, 'email', s.v, s.k, s.seen::jsonb, statement_timestamp()
      FROM s JOIN c ON c.primary_email = s.k
     ORDER BY s.ord
    ON CONFLICT (user_id, kind, key) DO NOTHING
    RETURNING id, key, contact_id
)
SELECT id, key, contact_id FROM ins
UNION ALL
SELECT NULL, NULL, count(*) FROM c
"""

# One statement writes a chunk's participants and duplicate links and returns the counts:
# - participants are upserted with exact counts (an unchanged row is not touched; xmax = 0 tells
#   an insert from an update), and the chunk's participants that their metadata no longer names
#   are deleted (a re-normalized event lost an attendee, or the interaction turned out to be a
#   duplicate); both read the statement's snapshot and touch disjoint rows;
# - the names seen in newly inserted participations of known identities add to the identity's
#   counts; the contacts of the identities that grew come back (their display name may change);
# - duplicates are linked to their canonical interaction, and the chunk's other links removed.
_WRITE_SQL = f"""
WITH s AS (
    SELECT * FROM unnest(%(interactions)s::int8[], %(contacts)s::int8[], %(identities)s::int8[],
                         %(roles)s::text[], %(responses)s::text[], %(occurred)s::timestamptz[],
                         %(names)s::text[], %(known)s::bool[]) AS s(i, c, d, r, s, o, n, k)
), up AS (
    INSERT INTO {_P} AS t (user_id, interaction_id, contact_id, identity_id, role,
                           response_status, occurred_at)
    SELECT %(user_id)s, i, c, d, r, s, o FROM s
    ON CONFLICT (interaction_id, identity_id, role) DO UPDATE
       SET response_status = EXCLUDED.response_status, occurred_at = EXCLUDED.occurred_at
     WHERE (t.response_status, t.occurred_at)
           IS DISTINCT FROM (EXCLUDED.response_status, EXCLUDED.occurred_at)
    RETURNING (xmax = 0) AS inserted, interaction_id, identity_id, role
), gone AS (
    -- each interaction's participants by key (participant_uniq), whatever the statistics
    DELETE FROM {_P} p
     WHERE p.id = ANY(ARRAY(
               SELECT x.id
                 FROM unnest(%(chunk)s::int8[]) AS c(id)
                 CROSS JOIN LATERAL (SELECT q.id, q.identity_id, q.role FROM {_P} q
                                      WHERE q.interaction_id = c.id OFFSET 0) x
                WHERE NOT EXISTS (SELECT 1 FROM s
                                   WHERE s.i = c.id AND s.d = x.identity_id AND s.r = x.role)))
       AND p.user_id = %(user_id)s
    RETURNING 1
), grown AS (
    SELECT s.d, s.n, count(*) AS c
      FROM up JOIN s ON s.i = up.interaction_id AND s.d = up.identity_id AND s.r = up.role
     WHERE up.inserted AND s.k AND s.n <> ''
     GROUP BY s.d, s.n
), added AS (
    -- identity id -> name -> count, looked up by key (no join for the planner to misestimate)
    SELECT jsonb_object_agg(d::text, names) AS names, array_agg(d) AS ids
      FROM (SELECT d, jsonb_object_agg(n, c) AS names FROM grown GROUP BY d) x
), named AS (
    UPDATE {_ID} t
       SET names = CASE WHEN jsonb_typeof(t.names) = 'object' THEN t.names ELSE '{{}}' END
                   || (SELECT jsonb_object_agg(
                                  e.key, coalesce((t.names->>e.key)::numeric, 0) + e.value::numeric)
                         FROM added a, jsonb_each(a.names->(t.id::text)) e)
      FROM unnest((SELECT ids FROM added)) AS g(id)
     WHERE t.id = g.id AND t.user_id = %(user_id)s
    RETURNING t.contact_id
), dup AS (
    INSERT INTO {_D} AS t (user_id, interaction_id, canonical_id, reason)
    SELECT %(user_id)s, i, c, %(reason)s
      FROM unnest(%(duplicates)s::int8[], %(canonicals)s::int8[]) AS s(i, c)
    ON CONFLICT (interaction_id) DO UPDATE SET canonical_id = EXCLUDED.canonical_id
     WHERE t.canonical_id <> EXCLUDED.canonical_id
    RETURNING (xmax = 0) AS inserted
), undup AS (
    DELETE FROM {_D}
     WHERE user_id = %(user_id)s AND interaction_id = ANY(%(chunk)s::int8[])
       AND NOT (interaction_id = ANY(%(duplicates)s::int8[]))
    RETURNING 1
)
SELECT (SELECT count(*) FROM up WHERE inserted), (SELECT count(*) FROM up),
       (SELECT count(*) FROM gone), (SELECT count(*) FROM dup WHERE inserted),
       ARRAY(SELECT DISTINCT contact_id FROM named ORDER BY 1)
"""

# The touched contacts with the name chosen over all their identities' name counts (the most
# frequent; ties go to the longer, then the first in code-point order, as choose_display_name);
# NULL when no identity has a name.
_TOUCHED_SQL = f"""
SELECT c.id, c.display_name, c.primary_email, c.company_domain, c.merged_into_id IS NULL,
       best.name
  FROM unnest(%(ids)s::int8[]) AS k(id)
  CROSS JOIN LATERAL (SELECT * FROM {_C} WHERE id = k.id OFFSET 0) c
  LEFT JOIN LATERAL (
      SELECT kv.key AS name
        FROM {_ID} ci CROSS JOIN LATERAL jsonb_each(ci.names) kv
       WHERE ci.contact_id = c.id AND jsonb_typeof(ci.names) = 'object' AND kv.key <> ''
       GROUP BY kv.key
       ORDER BY sum((kv.value)::numeric) DESC, char_length(kv.key) DESC, kv.key COLLATE "C"
       LIMIT 1) best ON true
 WHERE c.user_id = %(user_id)s
"""

_RENAME_SQL = f"""
UPDATE {_C} t SET display_name = s.n, updated_at = statement_timestamp()
  FROM unnest(%(ids)s::int8[], %(names)s::text[]) AS s(id, n)
 WHERE t.id = s.id AND t.user_id = %(user_id)s
"""

# Fuzzy candidates: live contacts at the same company domains, or with the very same names.
_CANDIDATES_SQL = f"""
SELECT id, display_name, company_domain FROM {_C}
 WHERE user_id = %(user_id)s AND merged_into_id IS NULL
   AND ((company_domain <> '' AND company_domain = ANY(%(domains)s::text[]))
        OR display_name = ANY(%(names)s::text[]))
"""

# A pair already suggested (pending, accepted or rejected) is never suggested again.
_INSERT_SUGGESTIONS_SQL = f"""
INSERT INTO {_S} (user_id, contact_a_id, contact_b_id, score, reason, status, created_at)
SELECT %(user_id)s, a, b, s, r, 'pending', statement_timestamp()
  FROM unnest(%(a)s::int8[], %(b)s::int8[], %(scores)s::float8[], %(reasons)s::text[])
       AS s(a, b, s, r)
ON CONFLICT (user_id, contact_a_id, contact_b_id) DO NOTHING
RETURNING id
"""

_EMAIL_ROLES = (
    ("from", ParticipantRole.FROM),
    ("to", ParticipantRole.TO),
    ("cc", ParticipantRole.CC),
    ("bcc", ParticipantRole.BCC),
    ("reply_to", ParticipantRole.REPLY_TO),
)
_RECIPIENT_ROLES = frozenset({ParticipantRole.TO, ParticipantRole.CC, ParticipantRole.BCC})


@dataclass(slots=True)
class ExtractReport:
    """What extract_contacts did. `seen == linked + sum(excluded.values())`."""

    interactions: int = 0
    seen: int = 0  # participant addresses read from the interactions
    linked: int = 0  # of them, linked to a contact (inserted, updated or already there)
    inserted: int = 0  # participant rows inserted
    updated: int = 0  # participant rows whose response status / time changed
    removed: int = 0  # participant rows their interaction no longer names
    contacts_created: int = 0
    identities_created: int = 0
    contacts_renamed: int = 0
    duplicates_linked: int = 0
    suggestions_created: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    chunks: int = 0
    statements_per_chunk: int = 0  # the most any chunk ran
    last_id: int = 0  # the last interaction id done
    stopped: bool = False

    def add(self, other: ExtractReport) -> None:
        for name in (
            "interactions",
            "seen",
            "linked",
            "inserted",
            "updated",
            "removed",
            "contacts_created",
            "identities_created",
            "contacts_renamed",
            "duplicates_linked",
            "suggestions_created",
            "chunks",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.excluded.update(other.excluded)
        self.statements_per_chunk = max(self.statements_per_chunk, other.statements_per_chunk)
        self.last_id = max(self.last_id, other.last_id)

    def details(self) -> dict[str, Any]:
        return {
            "participantsSeen": self.seen,
            "participantsLinked": self.linked,
            "participantsUpdated": self.updated,
            "participantsRemoved": self.removed,
            "contactsCreated": self.contacts_created,
            "identitiesCreated": self.identities_created,
            "contactsRenamed": self.contacts_renamed,
            "duplicatesLinked": self.duplicates_linked,
            "mergeSuggestions": self.suggestions_created,
            "excluded": dict(sorted(self.excluded.items())),
        }


@dataclass(slots=True)
class _Entry:
    interaction_id: int
    occurred_at: Any
    role: str
    value: str
    key: str
    name: str
    response: str


def user_own_keys(*, user_id: int) -> frozenset[str]:
    """Matching keys of the addresses and send-as aliases of every Google account of the user."""
    addresses: list[str] = []
    for account in GoogleAccount.objects.filter(user_id=user_id).only("email", "addresses"):
        addresses.extend(account.own_addresses)
    return own_keys(addresses)


def contacts_extract(
    *,
    user_id: int,
    interaction_ids: Iterable[int],
    chunk_size: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    in_transaction: Callable[[], None] | None = None,
    on_chunk: Callable[[ExtractReport], None] | None = None,
) -> ExtractReport:
    """Extract contacts from the given interactions of the user, chunk by chunk (ascending id).

    `in_transaction` runs inside each chunk's transaction before its writes (the job's fence);
    `should_stop` is asked between chunks, and a stop leaves `report.stopped` and
    `report.last_id` (continue after it).
    """
    config = get_config()
    chunk_size = chunk_size or config.chunk_size
    ids = sorted(set(interaction_ids))
    own = user_own_keys(user_id=user_id)
    reasons: dict[tuple[str, bool, bool], str | None] = {}  # the same addresses recur
    report = ExtractReport()
    for start in range(0, len(ids), chunk_size):
        chunk = contacts_extract_chunk(
            user_id=user_id,
            interaction_ids=ids[start : start + chunk_size],
            own=own,
            config=config,
            in_transaction=in_transaction,
            reasons=reasons,
        )
        report.add(chunk)
        if on_chunk is not None:
            on_chunk(report)
        if start + chunk_size < len(ids) and should_stop is not None and should_stop():
            report.stopped = True
            break
    return report


@contextmanager
def _cursor() -> Iterator[CursorWrapper]:
    """A server-side-binding cursor (each array one parameter: an array literal, see _array),
    wrapped like Django's own so query logging (django_assert_num_queries) and error mapping
    still apply. Django's psycopg 3 cursors bind client-side, quoting every element into the
    statement text: several times slower for large arrays."""
    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
    with wrapper(raw, connection) as wrapped:
        yield wrapped


def _array(values: list[Any]) -> str:
    """A list as a PostgreSQL array literal, for a `%(name)s::type[]` parameter: one string built
    by str.join, which PostgreSQL parses in C. psycopg dumps a list element by element in Python
    (binary or text), the largest Python cost of a chunk's statements."""
    if not values:
        return "{}"
    first = values[0]
    if isinstance(first, bool):
        return "{" + ",".join(["t" if v else "f" for v in values]) + "}"
    if isinstance(first, int):
        return "{" + ",".join(map(str, values)) + "}"
    if isinstance(first, float):
        return "{" + ",".join(map(repr, values)) + "}"
    # text, timestamps: quoted; backslashes and double quotes escaped when there are any (the
    # join holds two quotes per separator and no others then)
    texts = values if isinstance(first, str) else [str(v) for v in values]
    joined = '","'.join(texts)
    if "\\" in joined or joined.count('"') != 2 * (len(texts) - 1):
        joined = '","'.join([t.replace("\\", "\\\\").replace('"', '\\"') for t in texts])
    return '{"' + joined + '"}'


class _Statements:
    """A cursor that counts the statements it runs."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.count = 0

    def run(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        self.count += 1
        self.cursor.execute(
            sql, {k: _array(v) if isinstance(v, list) else v for k, v in params.items()}
        )
        return self.cursor.fetchall() if self.cursor.description else []


def contacts_extract_chunk(
    *,
    user_id: int,
    interaction_ids: list[int],
    own: frozenset[str],
    config: ContactsConfig | None = None,
    in_transaction: Callable[[], None] | None = None,
    reasons: dict[tuple[str, bool, bool], str | None] | None = None,
) -> ExtractReport:
    """One chunk in one transaction, with a bounded number of statements whatever its size.

    `reasons` memoizes the exclusion rule per (key, own, resource) across the chunks of one run
    (`own` and the config must be the same for every chunk that shares it)."""
    config = config or get_config()
    report = ExtractReport(chunks=1, last_id=max(interaction_ids, default=0))
    if not interaction_ids:
        return report
    with transaction.atomic(), _cursor() as raw_cursor:
        if in_transaction is not None:
            in_transaction()
        db = _Statements(raw_cursor)
        db.run(USER_LOCK_SQL, user_lock_params(EXTRACT_LOCK_NAMESPACE, user_id))  # one chunk a user
        rows = db.run(_LOAD_SQL, {"user_id": user_id, "ids": interaction_ids})
        report.interactions = len(rows)
        chunk_ids = [row[0] for row in rows]

        # One e-mail, one event: copies of a Message-ID point at its canonical interaction.
        duplicate_of = {row[0]: row[5] for row in rows if row[5] is not None and row[5] != row[0]}

        entries, bulk_entries, recipients_written = _read_entries(
            rows, duplicate_of, own, config, report, {} if reasons is None else reasons
        )

        # Bulk mail: its people count only if the user has written to them.
        if bulk_entries:
            bulk_keys = sorted({e.key for e in bulk_entries} - recipients_written)
            written = set(recipients_written)
            if bulk_keys:
                written.update(
                    k for (k,) in db.run(_WRITTEN_TO_SQL, {"user_id": user_id, "keys": bulk_keys})
                )
            for entry in bulk_entries:
                if entry.key in written:
                    entries.append(entry)
                else:
                    report.excluded[EXCLUDED_BULK] += 1

        # Identities: known key -> its contact; else a new contact per new key.
        keys = sorted({e.key for e in entries})
        identities: dict[str, tuple[int, int]] = {}
        if keys:
            for identity_id, key, contact_id in db.run(
                _IDENTITIES_SQL, {"user_id": user_id, "keys": keys}
            ):
                identities[key] = (identity_id, contact_id)
        new_keys = [k for k in keys if k not in identities]
        # the fuzzy subjects: new or renamed live contacts, with their names and domains
        subjects: dict[int, tuple[str, str]] = {}
        if new_keys:
            fresh = set(new_keys)
            names_seen: dict[str, Counter[str]] = {k: Counter() for k in new_keys}
            first_value: dict[str, str] = {}
            first_interaction: dict[str, int] = {}
            for entry in entries:
                if entry.key in fresh:
                    if entry.key not in first_value:
                        first_value[entry.key] = entry.value
                        first_interaction[entry.key] = entry.interaction_id
                    if entry.name:
                        names_seen[entry.key][entry.name] += 1
            new_names = [
                choose_display_name(names_seen[k], readable_name(first_value[k])) for k in new_keys
            ]
            new_domains = [company_domain(k, config.personal_domains) for k in new_keys]
            created = db.run(
                _INSERT_NEW_SQL,
                {
                    "user_id": user_id,
                    "names": new_names,
                    "keys": new_keys,
                    "domains": new_domains,
                    "froms": [first_interaction[k] for k in new_keys],
                    "values": [first_value[k] for k in new_keys],
                    "seen": [json.dumps(dict(names_seen[k])) for k in new_keys],
                },
            )
            report.contacts_created = created[-1][2]
            report.identities_created = len(created) - 1
            described = dict(zip(new_keys, zip(new_names, new_domains, strict=True), strict=True))
            for identity_id, key, contact_id in created[:-1]:
                identities[key] = (identity_id, contact_id)
                subjects[contact_id] = described[key]
            # under the advisory lock every new key's identity is inserted; be safe anyway
            entries = [e for e in entries if e.key in identities]
        else:
            fresh = set()

        # Participants, their identities' names and the duplicate links: one statement.
        (
            report.inserted,
            upserted,
            report.removed,
            report.duplicates_linked,
            touched,
        ) = db.run(
            _WRITE_SQL,
            {
                "user_id": user_id,
                "chunk": chunk_ids,
                "interactions": [e.interaction_id for e in entries],
                "contacts": [identities[e.key][1] for e in entries],
                "identities": [identities[e.key][0] for e in entries],
                "roles": [e.role for e in entries],
                "responses": [e.response for e in entries],
                "occurred": [e.occurred_at for e in entries],
                "names": [e.name for e in entries],
                "known": [e.key not in fresh for e in entries],
                "duplicates": list(duplicate_of),
                "canonicals": list(duplicate_of.values()),
                "reason": DUPLICATE_REASON,
            },
        )[0]
        report.linked = len(entries)
        report.updated = upserted - report.inserted

        # A contact's display name is the most frequent name over all its identities.
        if touched:
            renames: dict[int, str] = {}
            for contact_id, current, primary, domain, live, best in db.run(
                _TOUCHED_SQL, {"user_id": user_id, "ids": touched}
            ):
                if best is None:
                    best = current or readable_name(primary)
                if best != current:
                    renames[contact_id] = best
                    if live:
                        subjects[contact_id] = (best, domain)
            if renames:
                db.run(
                    _RENAME_SQL,
                    {"user_id": user_id, "ids": list(renames), "names": list(renames.values())},
                )
                report.contacts_renamed = len(renames)

        # Fuzzy: new or renamed contacts against the user's other live contacts.
        if subjects:
            report.suggestions_created = _suggest(db, user_id, subjects, config)
        report.statements_per_chunk = db.count
    return report


def _read_entries(
    rows: list[tuple],
    duplicate_of: dict[int, int],
    own: frozenset[str],
    config: ContactsConfig,
    report: ExtractReport,
    reasons: dict[tuple[str, bool, bool], str | None],
) -> tuple[list[_Entry], list[_Entry], set[str]]:
    """Participant addresses of the chunk's interactions: kept, held for the bulk rule, and the
    keys the user writes to in this chunk."""
    entries: list[_Entry] = []
    bulk_entries: list[_Entry] = []
    written: set[str] = set()
    patterns = config.automated_patterns
    for interaction_id, source, kind, occurred_at, metadata_text, _, bulk, resources in rows:
        metadata = json.loads(metadata_text)
        raw = list(_addresses(source, metadata, frozenset(resources or ())))
        report.seen += len(raw)
        if interaction_id in duplicate_of:
            report.excluded[EXCLUDED_DUPLICATE] += len(raw)
            continue
        seen_here: set[tuple[str, str]] = set()
        held = bulk and config.exclude_bulk and kind != "email_outbound"
        for role, value, name, response, is_own, is_resource in raw:
            key = matching_key(value)
            if key is None:
                report.excluded[EXCLUDED_INVALID] += 1
                continue
            memo = (key, is_own, is_resource)
            if memo in reasons:
                reason = reasons[memo]
            else:
                reason = reasons[memo] = exclusion_reason(
                    key, own_keys=own, patterns=patterns, resource=is_resource, own=is_own
                )
            if reason is not None:
                report.excluded[reason] += 1
                continue
            if (key, role) in seen_here:
                report.excluded[EXCLUDED_REPEATED] += 1
                continue
            seen_here.add((key, role))
            entry = _Entry(
                interaction_id, occurred_at, role, value, key, clean_name(name, value), response
            )
            if kind == "email_outbound" and role in _RECIPIENT_ROLES:
                written.add(key)
            (bulk_entries if held else entries).append(entry)
    return entries, bulk_entries, written


def _addresses(
    source: str, metadata: dict[str, Any], resources: frozenset[str]
) -> Iterable[tuple[str, str, str, str, bool, bool]]:
    """(role, address, name, response, own, resource) for every address the interaction names."""
    if source == "calendar":
        organizer = metadata.get("organizer")
        if isinstance(organizer, dict) and isinstance(organizer.get("email"), str):
            yield (
                ParticipantRole.ORGANIZER,
                organizer["email"],
                _text(organizer.get("name")),
                "",
                organizer.get("self") is True,
                False,
            )
        for attendee in metadata.get("attendees") or ():
            if isinstance(attendee, dict) and isinstance(attendee.get("email"), str):
                email = attendee["email"]
                yield (
                    ParticipantRole.ATTENDEE,
                    email,
                    _text(attendee.get("name")),
                    _text(attendee.get("response_status") or attendee.get("response")),
                    attendee.get("self") is True,
                    attendee.get("resource") is True or email.strip().lower() in resources,
                )
        return
    for name, role in _EMAIL_ROLES:
        value = metadata.get(name)
        for item in [value] if isinstance(value, dict) else value or ():
            if isinstance(item, dict) and isinstance(item.get("email"), str):
                yield role, item["email"], _text(item.get("name")), "", False, False


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _suggest(
    db: _Statements, user_id: int, info: dict[int, tuple[str, str]], config: ContactsConfig
) -> int:
    """MergeSuggestions for the new or renamed live contacts `info` ({id: (display name, company
    domain)}, as this chunk wrote them); returns how many were new."""
    domains = sorted({d for _, d in info.values() if d})
    names = sorted({n for n, _ in info.values() if n})
    candidates = db.run(_CANDIDATES_SQL, {"user_id": user_id, "domains": domains, "names": names})
    by_domain: dict[str, list[tuple[int, str]]] = defaultdict(list)
    by_name: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for cid, name, domain in candidates:
        if domain:
            by_domain[domain].append((cid, name))
        by_name[default_process(name)].append((cid, domain))
    pairs: dict[tuple[int, int], tuple[float, str]] = {}
    choices_of: dict[str, dict[int, str]] = {}
    for cid, (name, domain) in info.items():
        processed = default_process(name) if name else ""
        if not processed:
            continue
        if domain:
            choices = choices_of.get(domain)
            if choices is None:
                choices = choices_of[domain] = {
                    other: default_process(other_name) for other, other_name in by_domain[domain]
                }
            for _, score, other in process.extract(
                processed,
                choices,
                scorer=fuzz.token_sort_ratio,
                processor=None,
                score_cutoff=config.fuzzy_threshold,
                limit=None,
            ):
                if other != cid:
                    pair = (min(cid, other), max(cid, other))
                    pairs.setdefault(pair, (round(score, 1), f"similar name at {domain}"))
        for other, other_domain in by_name[processed]:
            if other == cid or (domain and other_domain):
                continue  # the same name at two company domains is not enough
            pair = (min(cid, other), max(cid, other))
            pairs.setdefault(pair, (100.0, "same name at a personal-mail domain"))
    if not pairs:
        return 0
    ordered = sorted(pairs.items())
    created = db.run(
        _INSERT_SUGGESTIONS_SQL,
        {
            "user_id": user_id,
            "a": [a for (a, _), _ in ordered],
            "b": [b for (_, b), _ in ordered],
            "scores": [score for _, (score, _) in ordered],
            "reasons": [reason for _, (_, reason) in ordered],
        },
    )
    return len(created)
