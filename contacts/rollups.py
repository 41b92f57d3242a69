"""Contact rollups: recent-activity figures per contact, recomputed set-based from participations.

Per contact, over the canonical interactions it took part in (an interaction linked as a
duplicate never counts; a contact in several roles of one interaction counts it once) that
have happened (occurred_at <= now: a meeting next week is not activity yet) and are not
cancelled meetings:

- first_interaction_at, last_interaction_at; last_inbound_at / last_outbound_at (e-mails
  received from / sent to, by the interaction's kind). An interaction whose date is only
  estimated (``occurred_at_estimated``: a Takeout message without a date, dated when it was
  imported) sets none of the three last_* dates: it would make the contact look active now;
- interaction_count and interactions_30d / _90d / _365d (counts decay: see the nightly refresh);
- inbound_count, outbound_count, meeting_count;
- typical_gap_days: the median gap between consecutive interactions, in days (None with fewer
  than two);
- recent_interactions: the last RECENT_LIMIT, newest first: [{"id", "kind", "occurred_at",
  "subject"}].

Participations are counted on the contact that holds them: a merge moves them to the target
(and `contact_merge` / `contact_unmerge` call `contact_rollups_refresh` for both contacts), so
a merged contact's rollups fall to zero and its target's include them.

`update_rollups` (contacts/processors/update_rollups.py) refreshes the contacts a batch touched;
the nightly schedule `crm_pipeline.rollups_nightly` refreshes every live contact.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from contacts.locks import rollups_lock
from contacts.models import Contact, InteractionDuplicate, InteractionParticipant
from jobs.models import Interaction

RECENT_LIMIT = 5
SUBJECT_CHARS = 200
NIGHTLY_SCHEDULE = "crm_pipeline.rollups_nightly"
NIGHTLY_HOUR_UTC = 3

_CONTACT = Contact._meta.db_table
_PARTICIPANT = InteractionParticipant._meta.db_table
_DUPLICATE = InteractionDuplicate._meta.db_table
_INTERACTION = Interaction._meta.db_table

# The Contact fields update_rollups computes (the admin shows them read-only).
ROLLUP_FIELDS = (
    "first_interaction_at",
    "last_interaction_at",
    "last_inbound_at",
    "last_outbound_at",
    "interaction_count",
    "interactions_30d",
    "interactions_90d",
    "interactions_365d",
    "inbound_count",
    "outbound_count",
    "meeting_count",
    "typical_gap_days",
    "recent_interactions",
)

# One statement per chunk of contacts: aggregate their participations and write the rollups of
# those whose figures changed (RETURNING yields exactly them). A contact without participations
# gets zeros. Scoping: the contacts must be the user's, and so must the interactions counted.
# Plans: every row is reached by key, one contact or interaction at a time (`LATERAL (...
# WHERE id = outer OFFSET 0)`, the user checked outside it): freshly written tables have no
# statistics, and a plain `user_id = ...` condition then made the planner read all the user's
# rows through the user_id index once per contact or per chunk (timeline/services.py).
_REFRESH_SQL = f"""
WITH target AS (
    SELECT c.*
      FROM unnest(%(ids)s::int8[]) AS x(id)
           CROSS JOIN LATERAL (
               SELECT c.id, c.user_id FROM {_CONTACT} c WHERE c.id = x.id OFFSET 0) c
     WHERE c.user_id = %(user_id)s
), parts AS (
    SELECT DISTINCT t.id AS contact_id, x.interaction_id, x.occurred_at, x.kind, x.subject,
           x.estimated
      FROM target t
           CROSS JOIN LATERAL (
               SELECT i.id AS interaction_id, i.user_id, i.occurred_at, i.kind,
                      left(i.subject, {SUBJECT_CHARS}) AS subject,
                      i.occurred_at_estimated AS estimated
                 FROM {_PARTICIPANT} p
                      CROSS JOIN LATERAL (
                          SELECT i.id, i.user_id, i.occurred_at, i.kind, i.subject,
                                 i.occurred_at_estimated,
                                 i.kind = 'meeting' AND i.metadata->>'cancelled' = 'true'
                                     AS cancelled
                            FROM {_INTERACTION} i WHERE i.id = p.interaction_id OFFSET 0) i
                WHERE p.contact_id = t.id
                  AND i.occurred_at <= %(now)s
                  AND NOT i.cancelled
                  AND NOT EXISTS (SELECT 1 FROM {_DUPLICATE} d WHERE d.interaction_id = i.id)
               OFFSET 0) x
     WHERE x.user_id = t.user_id
), ordered AS (
    SELECT parts.*,
           extract(epoch FROM occurred_at - lag(occurred_at) OVER (
               PARTITION BY contact_id ORDER BY occurred_at, interaction_id))::float8 AS gap_s,
           row_number() OVER (
               PARTITION BY contact_id ORDER BY occurred_at DESC, interaction_id DESC) AS rank
      FROM parts
), stats AS (
    SELECT contact_id,
           min(occurred_at) AS first_interaction_at,
           max(occurred_at) FILTER (WHERE NOT estimated) AS last_interaction_at,
           max(occurred_at) FILTER (WHERE kind = 'email_inbound' AND NOT estimated)
               AS last_inbound_at,
           max(occurred_at) FILTER (WHERE kind = 'email_outbound' AND NOT estimated)
               AS last_outbound_at,
           count(*) AS interaction_count,
           count(*) FILTER (WHERE occurred_at > %(now)s - interval '30 days') AS interactions_30d,
           count(*) FILTER (WHERE occurred_at > %(now)s - interval '90 days') AS interactions_90d,
           count(*) FILTER (WHERE occurred_at > %(now)s - interval '365 days')
               AS interactions_365d,
           count(*) FILTER (WHERE kind = 'email_inbound') AS inbound_count,
           count(*) FILTER (WHERE kind = 'email_outbound') AS outbound_count,
           count(*) FILTER (WHERE kind = 'meeting') AS meeting_count,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY gap_s) / 86400.0 AS typical_gap_days,
           jsonb_agg(jsonb_build_object(
                   'id', interaction_id, 'kind', kind,
                   'occurred_at', to_char(occurred_at AT TIME ZONE 'UTC',
                                          'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   'subject', subject)
               ORDER BY occurred_at DESC, interaction_id DESC)
               FILTER (WHERE rank <= {RECENT_LIMIT}) AS recent_interactions
      FROM ordered
     GROUP BY contact_id
), fresh AS (
    SELECT t.id, s.first_interaction_at, s.last_interaction_at, s.last_inbound_at,
           s.last_outbound_at,
           coalesce(s.interaction_count, 0) AS interaction_count,
           coalesce(s.interactions_30d, 0) AS interactions_30d,
           coalesce(s.interactions_90d, 0) AS interactions_90d,
           coalesce(s.interactions_365d, 0) AS interactions_365d,
           coalesce(s.inbound_count, 0) AS inbound_count,
           coalesce(s.outbound_count, 0) AS outbound_count,
           coalesce(s.meeting_count, 0) AS meeting_count,
           s.typical_gap_days,
           coalesce(s.recent_interactions, '[]'::jsonb) AS recent_interactions
      FROM target t LEFT JOIN stats s ON s.contact_id = t.id
)
UPDATE {_CONTACT} AS c
   SET {", ".join(f"{name} = f.{name}" for name in ROLLUP_FIELDS)},
       rollups_updated_at = %(now)s
  FROM fresh f
 WHERE c.id = f.id AND c.user_id = %(user_id)s
   AND ({", ".join(f"c.{name}" for name in ROLLUP_FIELDS)})
       IS DISTINCT FROM ({", ".join(f"f.{name}" for name in ROLLUP_FIELDS)})
RETURNING c.id
"""

# The contacts the participants of some interactions belong to (and their live targets); rows
# reached by key as in _REFRESH_SQL.
_TOUCHED_SQL = f"""
SELECT DISTINCT unnest(ARRAY[c.id, c.merged_into_id])
  FROM unnest(%(ids)s::int8[]) AS x(id)
       CROSS JOIN LATERAL (
           SELECT i.id, i.user_id FROM {_INTERACTION} i WHERE i.id = x.id OFFSET 0) i
       CROSS JOIN LATERAL (
           SELECT q.contact_id FROM {_PARTICIPANT} q WHERE q.interaction_id = i.id OFFSET 0) p
       CROSS JOIN LATERAL (
           SELECT c.id, c.user_id, c.merged_into_id
             FROM {_CONTACT} c WHERE c.id = p.contact_id OFFSET 0) c
 WHERE i.user_id = %(user_id)s AND c.user_id = i.user_id
"""


def contact_rollups_refresh(
    *, user_id: int, contact_ids: Sequence[int], now: datetime | None = None
) -> int:
    """Recompute the rollups of the user's contacts `contact_ids` (one statement); how many
    changed. Contacts of another user are ignored. `now` anchors the 30/90/365-day windows.

    Takes the user's rollups lock first (contacts.locks), held until the caller's transaction
    ends (or this call's own, outside one): the statement's snapshot is then taken after any
    other writer of the user's rollups committed, so older figures never overwrite newer ones.
    """
    ids = [pk for pk in contact_ids if pk is not None]
    if not ids:
        return 0
    with transaction.atomic(savepoint=False):
        rollups_lock(user_id=user_id)
        with connection.cursor() as cursor:
            cursor.execute(
                _REFRESH_SQL, {"user_id": user_id, "ids": ids, "now": now or timezone.now()}
            )
            return len(cursor.fetchall())


def touched_contact_ids(*, user_id: int, interaction_ids: Sequence[int]) -> list[int]:
    """The user's contacts that take part in `interaction_ids` (and the contacts they were
    merged into), ascending."""
    ids = list(interaction_ids)
    if not ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_TOUCHED_SQL, {"user_id": user_id, "ids": ids})
        return sorted(row[0] for row in cursor.fetchall() if row[0] is not None)


def live_contact_ids(*, user_id: int, after_id: int = 0, limit: int) -> list[int]:
    """The next `limit` live (not merged) contacts of the user after `after_id`, by id."""
    return list(
        Contact.objects.filter(user_id=user_id, merged_into__isnull=True, id__gt=after_id)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )


# --- nightly refresh --------------------------------------------------------------------------


def rollups_nightly() -> int:
    """The nightly Schedule's task: one `update_rollups` job (every live contact) per user who
    has contacts; how many were enqueued. The counts over 30/90/365 days decay with time even
    when nothing new happens, so every contact is refreshed once a day."""
    from jobs.enqueue import enqueue

    today = timezone.now().date().isoformat()
    users = (
        Contact.objects.filter(merged_into__isnull=True)
        .order_by("user_id")
        .values_list("user_id", flat=True)
        .distinct()
    )
    count = 0
    for user_id in users:
        job = enqueue(
            "update_rollups",
            user=user_id,
            payload={"all_contacts": True},
            dedupe_key=f"update_rollups:{user_id}:nightly:{today}",
            priority=5,
        )
        count += not getattr(job, "deduplicated", False)
    return count


def _next_nightly_run(now: datetime) -> datetime:
    run = datetime.combine(now.date(), time(NIGHTLY_HOUR_UTC), tzinfo=UTC)
    return run if run > now else run + timedelta(days=1)


def ensure_nightly_schedule(**kwargs: Any) -> None:
    """post_migrate: create or update the daily Schedule of the rollups refresh (idempotent)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=NIGHTLY_SCHEDULE,
        defaults={
            "func": "contacts.rollups.rollups_nightly",
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
        },
        create_defaults={
            "func": "contacts.rollups.rollups_nightly",
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
            "next_run": _next_nightly_run(timezone.now()),
        },
    )
