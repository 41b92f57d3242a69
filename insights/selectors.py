"""Reads of the insights app: the facts the rules need, and the insights themselves. Every one
is scoped to its user.

Interactions that count: canonical ones (not linked as a duplicate, contacts'
InteractionDuplicate), meetings not cancelled; people are the user's contacts through their
participations (a merge moves participations to the target, so a merged contact's history is
its target's).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, Max, Min, Q, QuerySet

from contacts.models import Contact, InteractionDuplicate, InteractionParticipant
from insights.conf import InsightsConfig
from insights.models import OPEN_STATUSES, Insight, InsightKind
from insights.rules.digest import digest_week
from insights.rules.facts import (
    AttendeeFacts,
    ContactFacts,
    DigestFacts,
    MeetingFacts,
    MessageFacts,
    ThreadFacts,
    ThreadSummary,
    TopContact,
)
from jobs.models import Interaction

# Characters of a message body the rules read (questions are near the top of a reply).
BODY_CHARS = 20_000
# Interaction ids a digest keeps in its evidence.
DIGEST_MAX_IDS = 1_000
# Attendees of one meeting the prep looks at.
MAX_ATTENDEES = 20

_I = Interaction._meta.db_table
_P = InteractionParticipant._meta.db_table
_C = Contact._meta.db_table
_D = InteractionDuplicate._meta.db_table


def _user_id(user: Any) -> int:
    return user if isinstance(user, int) else user.pk


# --- per contact ---------------------------------------------------------------------------


def contact_facts(*, user_id: int, contact_ids: Sequence[int], now: datetime) -> list[ContactFacts]:
    """The rollups of the user's live contacts among `contact_ids` (by id), with each one's next
    meeting (one that starts after `now`, not cancelled)."""
    ids = list(contact_ids)
    if not ids:
        return []
    rows = (
        Contact.objects.filter(user_id=user_id, id__in=ids, merged_into__isnull=True)
        .order_by("id")
        .values(
            "id",
            "display_name",
            "primary_email",
            "last_interaction_at",
            "last_inbound_at",
            "last_outbound_at",
            "interaction_count",
            "interactions_90d",
            "inbound_count",
            "outbound_count",
            "meeting_count",
            "typical_gap_days",
            "recent_interactions",
        )
    )
    upcoming = dict(
        InteractionParticipant.objects.filter(
            user_id=user_id,
            contact_id__in=ids,
            occurred_at__gt=now,
            interaction__user_id=user_id,
            interaction__kind="meeting",
        )
        .exclude(interaction__metadata__cancelled=True)
        .values("contact_id")
        .annotate(first=Min("occurred_at"))
        .values_list("contact_id", "first")
    )
    return [
        ContactFacts(
            id=row["id"],
            name=row["display_name"],
            email=row["primary_email"],
            last_interaction_at=row["last_interaction_at"],
            last_inbound_at=row["last_inbound_at"],
            last_outbound_at=row["last_outbound_at"],
            interaction_count=row["interaction_count"],
            interactions_90d=row["interactions_90d"],
            inbound_count=row["inbound_count"],
            outbound_count=row["outbound_count"],
            meeting_count=row["meeting_count"],
            typical_gap_days=row["typical_gap_days"],
            recent_interaction_ids=tuple(
                int(item["id"])
                for item in (row["recent_interactions"] or [])
                if isinstance(item, dict) and isinstance(item.get("id"), int)
            ),
            next_meeting_at=upcoming.get(row["id"]),
        )
        for row in rows
    ]


# --- awaiting a reply ------------------------------------------------------------------------

# The user's inbound e-mails of the window that no e-mail of the user's followed in their
# thread, with their sender (the contact in the `from` role) and the thread's last outbound.
# Served by interaction_recent_idx (user, -occurred_at) for the window and
# interaction_thread_idx (user, thread_id) for the thread probes.
_UNANSWERED_SQL = f"""
SELECT i.id, i.thread_id, i.occurred_at, i.subject, left(i.body_text, {BODY_CHARS}),
       c.id, c.display_name, c.primary_email,
       (SELECT max(o.occurred_at) FROM {_I} o
         WHERE o.user_id = i.user_id AND o.thread_id = i.thread_id
           AND o.kind = 'email_outbound') AS last_outbound_at
  FROM {_I} i
       JOIN LATERAL (
           SELECT p.contact_id FROM {_P} p
            WHERE p.interaction_id = i.id AND p.role = 'from' AND p.user_id = i.user_id
            ORDER BY p.id LIMIT 1) p ON true
       JOIN {_C} c ON c.id = p.contact_id AND c.user_id = i.user_id
 WHERE i.user_id = %(user_id)s
   AND i.kind = 'email_inbound'
   AND NOT i.occurred_at_estimated
   AND i.thread_id <> ''
   AND i.occurred_at > %(since)s AND i.occurred_at <= %(now)s
   AND NOT EXISTS (SELECT 1 FROM {_D} d WHERE d.interaction_id = i.id)
   AND NOT EXISTS (SELECT 1 FROM {_I} o
                    WHERE o.user_id = i.user_id AND o.thread_id = i.thread_id
                      AND o.kind = 'email_outbound' AND o.occurred_at > i.occurred_at)
 ORDER BY i.thread_id, i.occurred_at, i.id
"""


def awaiting_reply_threads(
    *, user_id: int, now: datetime, max_age_days: float
) -> list[ThreadFacts]:
    """Threads with inbound e-mails from a contact, received over the last `max_age_days`, that
    the user has not written in since; by thread id."""
    with connection.cursor() as cursor:
        cursor.execute(
            _UNANSWERED_SQL,
            {"user_id": user_id, "now": now, "since": now - timedelta(days=max_age_days)},
        )
        rows = cursor.fetchall()
    threads: dict[str, list[MessageFacts]] = defaultdict(list)
    last_outbound: dict[str, datetime | None] = {}
    for pk, thread, at, subject, body, contact_id, name, email, outbound_at in rows:
        threads[thread].append(
            MessageFacts(
                id=pk,
                occurred_at=at,
                subject=subject,
                body=body,
                contact_id=contact_id,
                contact_name=name,
                contact_email=email,
            )
        )
        last_outbound[thread] = outbound_at
    return [
        ThreadFacts(
            thread_id=thread, last_outbound_at=last_outbound[thread], unanswered=tuple(msgs)
        )
        for thread, msgs in sorted(threads.items())
    ]


# --- meeting prep ----------------------------------------------------------------------------


def _own_response(metadata: dict[str, Any]) -> str:
    for attendee in metadata.get("attendees") or []:
        if isinstance(attendee, dict) and attendee.get("self"):
            return str(attendee.get("response_status") or "")
    return ""


def upcoming_meetings(*, user_id: int, now: datetime, config: InsightsConfig) -> list[MeetingFacts]:
    """The user's meetings starting after `now` and within `meeting_prep_hours`, not cancelled
    and not declined by the user, with their attendees (contacts, not declined), each one's
    recent e-mail threads and unanswered messages."""
    meetings = list(
        Interaction.objects.filter(
            user_id=user_id,
            kind="meeting",
            occurred_at__gt=now,
            occurred_at__lte=now + timedelta(hours=config.meeting_prep_hours),
            occurred_at_estimated=False,
        )
        .exclude(metadata__cancelled=True)
        .order_by("occurred_at", "id")
        .values("id", "subject", "occurred_at", "metadata")
    )
    meetings = [m for m in meetings if _own_response(m["metadata"] or {}) != "declined"]
    if not meetings:
        return []
    people: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for row in (
        InteractionParticipant.objects.filter(
            user_id=user_id,
            interaction_id__in=[m["id"] for m in meetings],
            role__in=("organizer", "attendee"),
            contact__user_id=user_id,
        )
        .order_by("interaction_id", "id")
        .values(
            "interaction_id",
            "contact_id",
            "role",
            "response_status",
            "contact__display_name",
            "contact__primary_email",
        )
    ):
        seen = people[row["interaction_id"]].setdefault(
            row["contact_id"],
            {
                "name": row["contact__display_name"],
                "email": row["contact__primary_email"],
                "response": "",
            },
        )
        if row["role"] == "attendee" and row["response_status"]:
            seen["response"] = row["response_status"]
    contact_ids = sorted({c for attendees in people.values() for c in attendees})
    threads = _recent_threads(user_id=user_id, contact_ids=contact_ids, now=now, config=config)
    unanswered = _unanswered_from(
        user_id=user_id,
        contact_threads={c: [t.thread_id for t in ts] for c, ts in threads.items()},
    )
    result = []
    for meeting in meetings:
        attendees = [
            AttendeeFacts(
                contact_id=contact_id,
                name=info["name"],
                email=info["email"],
                response_status=info["response"],
                threads=tuple(threads.get(contact_id, ())),
                unanswered=tuple(unanswered.get(contact_id, ())),
            )
            for contact_id, info in list(people.get(meeting["id"], {}).items())[:MAX_ATTENDEES]
        ]
        duration = (meeting["metadata"] or {}).get("duration_s")
        result.append(
            MeetingFacts(
                id=meeting["id"],
                subject=meeting["subject"],
                starts_at=meeting["occurred_at"],
                duration_s=duration if isinstance(duration, int) else None,
                attendees=tuple(attendees),
            )
        )
    return result


def _recent_threads(
    *, user_id: int, contact_ids: list[int], now: datetime, config: InsightsConfig
) -> dict[int, list[ThreadSummary]]:
    """Per contact, its most recent e-mail threads with the user (newest first)."""
    if not contact_ids:
        return {}
    rows = (
        InteractionParticipant.objects.filter(
            user_id=user_id,
            contact_id__in=contact_ids,
            occurred_at__gt=now - timedelta(days=config.meeting_prep_lookback_days),
            occurred_at__lte=now,
            interaction__user_id=user_id,
            interaction__kind__in=("email_inbound", "email_outbound"),
            interaction__duplicate_of__isnull=True,
        )
        .exclude(interaction__thread_id="")
        .order_by("contact_id", "-occurred_at", "-interaction_id")
        .values_list(
            "contact_id",
            "interaction_id",
            "interaction__thread_id",
            "interaction__subject",
            "occurred_at",
        )
    )
    per_contact: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for contact_id, interaction_id, thread_id, subject, at in rows:
        threads = per_contact[contact_id]
        entry = threads.get(thread_id)
        if entry is None:
            if len(threads) >= config.meeting_prep_threads:
                continue
            entry = threads[thread_id] = {"subject": subject, "last_at": at, "ids": []}
        if interaction_id not in entry["ids"] and len(entry["ids"]) < 5:
            entry["ids"].append(interaction_id)
    return {
        contact_id: [
            ThreadSummary(
                thread_id=thread_id,
                subject=entry["subject"],
                last_at=entry["last_at"],
                interaction_ids=tuple(entry["ids"]),
            )
            for thread_id, entry in threads.items()
        ]
        for contact_id, threads in per_contact.items()
    }


def _unanswered_from(
    *, user_id: int, contact_threads: dict[int, list[str]]
) -> dict[int, list[MessageFacts]]:
    """Per contact, its inbound e-mails (as sender) in the given threads that came after the
    user's last e-mail in the thread, oldest first."""
    thread_ids = sorted({t for ts in contact_threads.values() for t in ts})
    if not thread_ids:
        return {}
    last_outbound = dict(
        Interaction.objects.filter(user_id=user_id, thread_id__in=thread_ids, kind="email_outbound")
        .values("thread_id")
        .annotate(last=Max("occurred_at"))
        .values_list("thread_id", "last")
    )
    rows = (
        InteractionParticipant.objects.filter(
            user_id=user_id,
            contact_id__in=list(contact_threads),
            role="from",
            interaction__user_id=user_id,
            interaction__kind="email_inbound",
            interaction__thread_id__in=thread_ids,
            interaction__duplicate_of__isnull=True,
        )
        .order_by("contact_id", "occurred_at", "interaction_id")
        .values_list(
            "contact_id",
            "interaction_id",
            "interaction__thread_id",
            "occurred_at",
            "interaction__subject",
            "interaction__body_text",
            "contact__display_name",
            "contact__primary_email",
        )
    )
    result: dict[int, list[MessageFacts]] = defaultdict(list)
    for contact_id, pk, thread_id, at, subject, body, name, email in rows:
        if thread_id not in contact_threads.get(contact_id, ()):
            continue
        answered_at = last_outbound.get(thread_id)
        if answered_at is not None and answered_at >= at:
            continue
        if any(m.id == pk for m in result[contact_id]):
            continue
        result[contact_id].append(
            MessageFacts(
                id=pk,
                occurred_at=at,
                subject=subject,
                body=(body or "")[:BODY_CHARS],
                contact_id=contact_id,
                contact_name=name,
                contact_email=email,
            )
        )
    return result


# --- weekly digest ---------------------------------------------------------------------------


def digest_facts(*, user_id: int, now: datetime, config: InsightsConfig) -> DigestFacts:
    """The user's last complete ISO week before `now` (insights.rules.digest.digest_week)."""
    week, start, end = digest_week(now)
    interactions = Interaction.objects.filter(
        user_id=user_id, occurred_at__gte=start, occurred_at__lt=end, duplicate_of__isnull=True
    ).exclude(Q(kind="meeting") & Q(metadata__cancelled=True))
    counts = dict(
        interactions.order_by().values("kind").annotate(n=Count("id")).values_list("kind", "n")
    )
    ids = list(
        interactions.order_by("occurred_at", "id").values_list("id", flat=True)[
            : DIGEST_MAX_IDS + 1
        ]
    )
    per_contact = list(
        InteractionParticipant.objects.filter(
            user_id=user_id,
            contact__user_id=user_id,
            interaction__in=interactions,
        )
        .values("contact_id", "contact__display_name", "contact__primary_email")
        .annotate(n=Count("interaction_id", distinct=True))
        .order_by("-n", "contact_id")
    )
    new_contacts = tuple(
        Contact.objects.filter(
            user_id=user_id,
            merged_into__isnull=True,
            first_interaction_at__gte=start,
            first_interaction_at__lt=end,
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    open_items: dict[str, list[int]] = {
        kind: [] for kind in ("awaiting_reply", "going_cold", "meeting_prep")
    }
    for kind, pk in (
        Insight.objects.filter(user_id=user_id, status__in=OPEN_STATUSES, kind__in=list(open_items))
        .order_by("kind", "id")
        .values_list("kind", "id")
    ):
        open_items[kind].append(pk)
    return DigestFacts(
        week=week,
        start=start,
        end=end,
        received=counts.get("email_inbound", 0),
        sent=counts.get("email_outbound", 0),
        meetings=counts.get("meeting", 0),
        contacts=len(per_contact),
        new_contact_ids=new_contacts,
        top=tuple(
            TopContact(
                contact_id=row["contact_id"],
                name=row["contact__display_name"],
                email=row["contact__primary_email"],
                interactions=row["n"],
            )
            for row in per_contact[: config.digest_top_contacts]
        ),
        open_items=open_items,
        interaction_ids=tuple(ids[:DIGEST_MAX_IDS]),
        interaction_ids_truncated=len(ids) > DIGEST_MAX_IDS,
    )


# --- the insights ----------------------------------------------------------------------------

STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    "open": tuple(OPEN_STATUSES),
    "all": (),
    **{status: (status,) for status in ("new", "seen", "dismissed", "done")},
}


def insight_list(
    *, user: Any, kinds: Iterable[str] | None = None, status: str = "open"
) -> QuerySet[Insight]:
    """The user's insights, best first (score, then newest): `status` is "open" (new and
    seen), "all" or one status; `kinds` limits the kinds (ValueError for an unknown one)."""
    if status not in STATUS_FILTERS:
        raise ValueError(f"unknown status {status!r}; one of: {', '.join(STATUS_FILTERS)}")
    insights = Insight.objects.filter(user_id=_user_id(user))
    if STATUS_FILTERS[status]:
        insights = insights.filter(status__in=STATUS_FILTERS[status])
    if kinds is not None:
        wanted = list(kinds)
        unknown = [k for k in wanted if k not in InsightKind.values]
        if unknown:
            raise ValueError(
                f"unknown kind {unknown[0]!r}; one of: {', '.join(InsightKind.values)}"
            )
        insights = insights.filter(kind__in=wanted)
    return insights.select_related("contact").order_by("-score", "-updated_at", "-id")


def insights_summary(*, user_id: int) -> dict[str, object]:
    """The user's insights: how many, and how many of each kind (for the demo summary)."""
    by_kind = dict(
        Insight.objects.filter(user_id=user_id)
        .values_list("kind")
        .annotate(n=Count("id"))
        .order_by("kind")
    )
    return {"insights": sum(by_kind.values()), "insightsByKind": by_kind}


def insights_llm_pending(*, user_id: int, kinds: Iterable[str], after_id: int) -> QuerySet[Insight]:
    """Open insights of `kinds` whose current content the LLM has not answered for (new or
    changed content, or a timeout or error last time), by id after `after_id`."""
    return (
        Insight.objects.filter(
            user_id=user_id, kind__in=list(kinds), status__in=OPEN_STATUSES, id__gt=after_id
        )
        .exclude(llm_basis_hash=F("basis_hash"))
        .order_by("id")
    )


def interaction_texts(
    *, user_id: int, interaction_ids: Sequence[int], limit: int
) -> list[dict[str, Any]]:
    """The newest `limit` of the user's interactions among `interaction_ids`, oldest first, as
    the LLM sees them: id, kind, date, subject and the text its sender wrote (insights.text)."""
    from insights.text import new_text

    rows = (
        Interaction.objects.filter(user_id=user_id, id__in=list(interaction_ids))
        .order_by("-occurred_at", "-id")
        .values("id", "kind", "occurred_at", "subject", "body_text")[:limit]
    )
    return [
        {
            "interaction_id": row["id"],
            "kind": row["kind"],
            "occurred_at": row["occurred_at"].isoformat(),
            "subject": row["subject"][:300],
            "text": new_text(row["body_text"][:BODY_CHARS])[:1500]
            if row["kind"] != "meeting"
            else "",
        }
        for row in reversed(list(rows))
    ]
