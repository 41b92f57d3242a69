"""Meeting prep: a meeting starting soon, with its attendees' recent threads and open questions.

For a meeting that starts within `meeting_prep_hours` (48) of `now`, is not cancelled, and has
at least one attendee who is a contact of the user and has not declined
(insights.selectors.upcoming_meetings): per attendee, their `meeting_prep_threads` (3) most
recent e-mail threads with the user over `meeting_prep_lookback_days` (90), and the questions
they asked there that have had no reply since (insights.text).

score = 100 - 50 * hours_until / meeting_prep_hours: 100 when it starts, 50 a window away.
Fingerprint: the meeting and its start, so a rescheduled meeting gets a new insight. It expires
`expiry_days` after the start.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from insights.conf import InsightsConfig
from insights.rules.base import Candidate, clip, fingerprint, iso
from insights.rules.facts import MeetingFacts
from insights.text import asked

KIND = "meeting_prep"


def meeting_prep(
    meeting: MeetingFacts, *, now: datetime, config: InsightsConfig
) -> Candidate | None:
    attendees = [a for a in meeting.attendees if a.response_status != "declined"]
    if not attendees:
        return None
    hours_until = round((meeting.starts_at - now).total_seconds() / 3600, 2)
    if not 0 < hours_until <= config.meeting_prep_hours:
        return None
    score = round(100.0 - 50.0 * hours_until / config.meeting_prep_hours, 1)
    people: list[dict[str, Any]] = []
    open_questions: list[dict[str, Any]] = []
    interaction_ids: list[int] = [meeting.id]
    for attendee in attendees:
        questions = [
            {"text": q, "interaction_id": m.id} for m in attendee.unanswered for q in asked(m.body)
        ]
        open_questions.extend(questions)
        threads = [
            {
                "thread_id": t.thread_id,
                "subject": t.subject,
                "last_at": iso(t.last_at),
                "interaction_ids": list(t.interaction_ids),
            }
            for t in attendee.threads
        ]
        for t in attendee.threads:
            interaction_ids.extend(i for i in t.interaction_ids if i not in interaction_ids)
        people.append(
            {
                "contact_id": attendee.contact_id,
                "name": attendee.name,
                "email": attendee.email,
                "response_status": attendee.response_status,
                "threads": threads,
                "open_questions": questions,
            }
        )
    evidence = {
        "meeting_id": meeting.id,
        "subject": meeting.subject,
        "starts_at": iso(meeting.starts_at),
        "duration_s": meeting.duration_s,
        "hours_until": hours_until,
        "window_hours": config.meeting_prep_hours,
        "attendees": people,
        "interaction_ids": interaction_ids,
    }
    subject = meeting.subject or "(untitled meeting)"
    names = ", ".join(a.label for a in attendees[:5]) + (
        f" and {len(attendees) - 5} more" if len(attendees) > 5 else ""
    )
    thread_bits = [
        f"“{clip(t.subject or '(no subject)', 60)}” ({a.label}, {t.last_at:%d %b})"
        for a in attendees
        for t in a.threads
    ]
    parts = [f"“{clip(subject, 80)}” starts in {hours_until:.0f} h with {names}."]
    if thread_bits:
        parts.append(f"Recent threads: {'; '.join(thread_bits[:6])}.")
    if open_questions:
        shown = "; ".join(f"“{clip(q['text'], 120)}”" for q in open_questions[:3])
        parts.append(f"Open questions: {shown}.")
    else:
        parts.append("No open questions from them.")
    return Candidate(
        kind=KIND,
        fingerprint=fingerprint(KIND, f"meeting:{meeting.id}", f"start:{iso(meeting.starts_at)}"),
        contact_id=attendees[0].contact_id if len(attendees) == 1 else None,
        title=f"Prepare for “{clip(subject, 200)}” ({meeting.starts_at:%a %d %b %H:%M} UTC)"[:300],
        summary=" ".join(parts),
        evidence=evidence,
        score=score,
        expires_at=meeting.starts_at + timedelta(days=config.expiry_days),
        open_questions=open_questions,
        basis={
            "meeting": meeting.id,
            "start": iso(meeting.starts_at),
            "attendees": [a.contact_id for a in attendees],
            "threads": [
                [t.thread_id, t.interaction_ids[0] if t.interaction_ids else None]
                for a in attendees
                for t in a.threads
            ],
            "questions": open_questions,
        },
    )
