"""Timeline writes: participants of interactions to per-contact events, and the merge hook.

One event per (interaction, contact, type):

- ``email_received`` / ``email_sent``: the interaction is an inbound / outbound e-mail the
  contact took part in (any role). Data: subject, snippet, direction, thread, message id, roles.
- ``meeting``: a meeting the contact organised or was invited to, with the contact's response
  status. Data: subject, response_status, organizer, meeting link, duration, location, start,
  end, all_day, status, roles.
- ``meeting_cancelled``: the same meeting once cancelled. A cancellation UPDATES the contact's
  ``meeting`` event of that interaction (type, title, data) instead of adding one; a meeting
  confirmed again turns back the same way.

Any event whose interaction's date is only estimated (``occurred_at_estimated``: a Takeout
message without a date of its own) has ``"estimated": true`` in its data.

Only canonical interactions get events: an interaction linked as a duplicate
(``InteractionDuplicate``: the same Message-ID from Takeout and from the API) gets none, and an
event written before the link was made is deleted by the next write of that interaction. So is
the event of a contact that no longer takes part (an attendee removed from a meeting), unless
the contact is merged: a merge leaves on its source the events the target already had, and
they must stay for the unmerge. An unmerge also moves back the events written during the merge
for participations that went back to the source (timeline_events_restore).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection

from contacts.models import Contact, InteractionDuplicate, InteractionParticipant
from jobs.models import Interaction
from timeline.models import TimelineEvent, TimelineEventType

_EVENT = TimelineEvent._meta.db_table
_PARTICIPANT = InteractionParticipant._meta.db_table
_CONTACT = Contact._meta.db_table
_DUPLICATE = InteractionDuplicate._meta.db_table
_INTERACTION = Interaction._meta.db_table
_TITLE_MAX = TimelineEvent._meta.get_field("title").max_length

# The conflict target of the upsert: the expression of the unique index timeline_event_uniq
# (a meeting and its cancellation are one event), spelled as Django creates it.
_SLOT = "(CASE WHEN event_type = 'meeting_cancelled' THEN 'meeting' ELSE event_type END)"

# One statement per chunk of interactions. `chunk`: the user's interactions among the ids;
# `src`: one row per (canonical interaction, contact) with the contact's roles and response;
# `ev`: its event; `written`: the upsert (a meeting whose cancellation changed is re-typed in
# place through the slot; an unchanged event is not rewritten, so RETURNING yields exactly the
# inserted and updated rows; xmax = 0 tells a fresh insert); `removed`: events of interactions
# since linked as duplicates, and of live contacts that no longer take part.
# Scoping: the interactions must be the user's, and so must each participant's contact.
# Plans: every row is reached by key, one interaction or contact at a time (`LATERAL (...
# WHERE id = outer OFFSET 0)`, the user checked outside it). Freshly written tables have no
# statistics (a new user, a large first sync), and a plain `user_id = ...` condition then
# made the planner read all the user's rows through the user_id index once per interaction or
# per chunk: measured, 13 s for the first chunk of 500 interactions; each chunk slower than
# the one before. OFFSET 0 keeps a subquery from being flattened into the outer join.
_WRITE_SQL = f"""
WITH chunk AS (
    SELECT i.*
      FROM unnest(%(ids)s::int8[]) AS x(id)
           CROSS JOIN LATERAL (
               SELECT i.id, i.user_id, i.occurred_at, i.occurred_at_estimated, i.kind,
                      i.subject, i.thread_id, i.direction, i.metadata
                 FROM {_INTERACTION} i WHERE i.id = x.id OFFSET 0) i
     WHERE i.user_id = %(user_id)s
), src AS (
    SELECT i.id AS interaction_id, p.contact_id, i.occurred_at, i.occurred_at_estimated,
           i.kind, i.subject, i.thread_id, i.direction, i.metadata, p.roles, p.response
      FROM chunk i
           CROSS JOIN LATERAL (
               SELECT q.contact_id, array_agg(DISTINCT q.role ORDER BY q.role) AS roles,
                      max(q.response_status)
                          FILTER (WHERE q.role = 'attendee' AND q.response_status <> '')
                          AS response
                 FROM {_PARTICIPANT} q
                      CROSS JOIN LATERAL (
                          SELECT c.user_id FROM {_CONTACT} c WHERE c.id = q.contact_id OFFSET 0
                      ) c
                WHERE q.interaction_id = i.id AND c.user_id = i.user_id
                GROUP BY q.contact_id
               OFFSET 0) p
     WHERE NOT EXISTS (SELECT 1 FROM {_DUPLICATE} d WHERE d.interaction_id = i.id)
), ev AS (
    SELECT interaction_id, contact_id, occurred_at, event_type,
           left(CASE event_type
                    WHEN 'email_received' THEN 'Received: '
                    WHEN 'email_sent' THEN 'Sent: '
                    WHEN 'meeting' THEN 'Meeting: '
                    ELSE 'Cancelled: ' END
                || coalesce(nullif(subject, ''),
                            CASE WHEN kind = 'meeting' THEN '(no title)' ELSE '(no subject)' END),
                {_TITLE_MAX}) AS title,
           jsonb_strip_nulls(CASE WHEN kind = 'meeting' THEN jsonb_build_object(
                'subject', subject,
                'response_status', response,
                'organizer', 'organizer' = ANY(roles),
                'meeting_link', metadata->'meeting_link',
                'duration_s', metadata->'duration_s',
                'location', metadata->'location',
                'start', metadata->'start',
                'end', metadata->'end',
                'all_day', metadata->'all_day',
                'status', metadata->'status',
                'roles', to_jsonb(roles))
           ELSE jsonb_build_object(
                'subject', subject,
                'snippet', metadata->'snippet',
                'direction', nullif(direction, ''),
                'thread_id', nullif(thread_id, ''),
                'message_id', metadata->'message_id',
                'roles', to_jsonb(roles)) END
           -- a date only estimated (a Takeout message without one) says so
           || jsonb_build_object('estimated', CASE WHEN occurred_at_estimated THEN true END))
           AS data
      FROM (SELECT src.*,
                   CASE WHEN kind = 'meeting' THEN
                            CASE WHEN metadata->>'cancelled' = 'true'
                                 THEN '{TimelineEventType.MEETING_CANCELLED}'
                                 ELSE '{TimelineEventType.MEETING}' END
                        WHEN kind = 'email_outbound' THEN '{TimelineEventType.EMAIL_SENT}'
                        ELSE '{TimelineEventType.EMAIL_RECEIVED}' END AS event_type
              FROM src) typed
), written AS (
    INSERT INTO {_EVENT} AS t (
        user_id, contact_id, interaction_id, event_type, occurred_at, title, data,
        created_at, updated_at)
    SELECT %(user_id)s, contact_id, interaction_id, event_type, occurred_at, title, data,
           statement_timestamp(), statement_timestamp()
      FROM ev
    ON CONFLICT (interaction_id, contact_id, {_SLOT}) DO UPDATE
       SET event_type = EXCLUDED.event_type, occurred_at = EXCLUDED.occurred_at,
           title = EXCLUDED.title, data = EXCLUDED.data, updated_at = EXCLUDED.updated_at
     WHERE (t.event_type, t.occurred_at, t.title, t.data)
           IS DISTINCT FROM (EXCLUDED.event_type, EXCLUDED.occurred_at, EXCLUDED.title,
                             EXCLUDED.data)
    RETURNING (xmax = 0) AS inserted
), removed AS (
    DELETE FROM {_EVENT} AS t
     WHERE t.id = ANY(ARRAY(
               SELECT e.id
                 FROM chunk i
                      CROSS JOIN LATERAL (
                          SELECT e.id, e.contact_id FROM {_EVENT} e
                           WHERE e.interaction_id = i.id OFFSET 0) e
                      CROSS JOIN LATERAL (
                          SELECT c.merged_into_id FROM {_CONTACT} c
                           WHERE c.id = e.contact_id OFFSET 0) c
                WHERE EXISTS (SELECT 1 FROM {_DUPLICATE} d WHERE d.interaction_id = i.id)
                   OR (c.merged_into_id IS NULL
                       AND NOT EXISTS (SELECT 1 FROM {_PARTICIPANT} q
                                        WHERE q.interaction_id = i.id
                                          AND q.contact_id = e.contact_id))))
    RETURNING 1
)
SELECT (SELECT count(*) FROM src),
       (SELECT count(*) FILTER (WHERE inserted) FROM written),
       (SELECT count(*) FILTER (WHERE NOT inserted) FROM written),
       (SELECT count(*) FROM removed)
"""


@dataclass(slots=True)
class TimelineReport:
    """What a write did: events due (one per canonical interaction and contact), inserted,
    updated (changed in place, cancellations included), unchanged, deleted (events of duplicates
    and of contacts no longer taking part)."""

    interactions: int = 0
    events: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    chunks: int = 0

    @property
    def unchanged(self) -> int:
        return self.events - self.inserted - self.updated

    def add(self, other: TimelineReport) -> None:
        for name in ("interactions", "events", "inserted", "updated", "deleted", "chunks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def timeline_events_write(*, user_id: int, interaction_ids: Sequence[int]) -> TimelineReport:
    """Write the timeline events of the user's interactions `interaction_ids` (one chunk).

    One statement whatever the number of interactions; idempotent (a rerun inserts and updates
    nothing). Interactions of another user are ignored.
    """
    ids = list(interaction_ids)
    if not ids:
        return TimelineReport()
    with connection.cursor() as cursor:
        cursor.execute(_WRITE_SQL, {"user_id": user_id, "ids": ids})
        events, inserted, updated, deleted = cursor.fetchone()
    return TimelineReport(
        interactions=len(ids),
        events=events,
        inserted=inserted,
        updated=updated,
        deleted=deleted,
        chunks=1,
    )


# --- merge hook (contacts.merge_hooks) --------------------------------------------------------

MERGE_HOOK = "timeline_events"

_MOVE_SQL = f"""
UPDATE {_EVENT} AS t SET contact_id = %(target_id)s, updated_at = statement_timestamp()
 WHERE t.user_id = %(user_id)s AND t.contact_id = %(source_id)s
   AND EXISTS (SELECT 1 FROM {_CONTACT} c WHERE c.id = %(target_id)s AND c.user_id = %(user_id)s)
   AND NOT EXISTS (SELECT 1 FROM {_EVENT} o
                    WHERE o.interaction_id = t.interaction_id AND o.contact_id = %(target_id)s
                      AND {_SLOT.replace("event_type", "o.event_type")}
                          = {_SLOT.replace("event_type", "t.event_type")})
RETURNING t.id
"""


def timeline_events_move(*, user_id: int, source_id: int, target_id: int) -> list[int]:
    """Re-point the source contact's events to the target; the ids moved, ascending.

    An event the target already has (same interaction and type) stays on the source, hidden
    because the source is merged, so an unmerge finds both exactly as they were. Nothing moves
    to a contact that is not the user's.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _MOVE_SQL, {"user_id": user_id, "source_id": source_id, "target_id": target_id}
        )
        return sorted(row[0] for row in cursor.fetchall())


_FOLLOW_SQL = f"""
UPDATE {_EVENT} AS t SET contact_id = %(source_id)s, updated_at = statement_timestamp()
 WHERE t.user_id = %(user_id)s AND t.contact_id = %(target_id)s
   AND EXISTS (SELECT 1 FROM {_CONTACT} c WHERE c.id = %(source_id)s AND c.user_id = %(user_id)s)
   AND EXISTS (SELECT 1 FROM {_PARTICIPANT} q
                WHERE q.interaction_id = t.interaction_id AND q.contact_id = %(source_id)s)
   AND NOT EXISTS (SELECT 1 FROM {_PARTICIPANT} q
                    WHERE q.interaction_id = t.interaction_id AND q.contact_id = %(target_id)s)
   AND NOT EXISTS (SELECT 1 FROM {_EVENT} o
                    WHERE o.interaction_id = t.interaction_id AND o.contact_id = %(source_id)s
                      AND {_SLOT.replace("event_type", "o.event_type")}
                          = {_SLOT.replace("event_type", "t.event_type")})
"""


def timeline_events_restore(
    *, user_id: int, source_id: int, target_id: int, ids: list[int]
) -> None:
    """Undo a merge's move: the events `ids` still on the target go back to the source, and so
    do the target's events of interactions only the source takes part in now (events written
    while the merge stood, for participations that went back to the source)."""
    if not Contact.objects.filter(pk=source_id, user_id=user_id).exists():
        return  # another user's contact: nothing of this user's goes to it
    if ids:
        TimelineEvent.objects.filter(user_id=user_id, contact_id=target_id, id__in=ids).update(
            contact_id=source_id
        )
    with connection.cursor() as cursor:
        cursor.execute(
            _FOLLOW_SQL, {"user_id": user_id, "source_id": source_id, "target_id": target_id}
        )
