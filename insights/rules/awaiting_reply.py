"""Awaiting your reply: someone asked something in a thread and you have not answered.

For a thread (insights.selectors.awaiting_reply_threads: the inbound e-mails of the last
`awaiting_reply_max_age_days` that came after the user's last message in their thread, from a
contact), at `now`:

- each unanswered message's questions are found in its own text, quoted history and signature
  removed (insights.text);
- the thread is awaiting a reply when some asking message is at least `awaiting_reply_days`
  old (3); days_waiting counts from the oldest such message (2 decimals).

score = min(100, 50 + 50 * days_waiting / awaiting_reply_max_age_days): the longer a question
waits, the higher (55 after 3 days, 100 at the 30-day horizon). Fingerprint: the thread and its
latest unanswered message, so their writing again (a reminder) is a new insight even if the
previous one was dismissed; your reply resolves it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from insights.conf import InsightsConfig
from insights.rules.base import Candidate, clip, days_between, days_text, fingerprint, iso
from insights.rules.facts import ThreadFacts
from insights.text import asked

KIND = "awaiting_reply"


def awaiting_reply(
    thread: ThreadFacts, *, now: datetime, config: InsightsConfig
) -> Candidate | None:
    if not thread.unanswered:
        return None
    asking = [(m, asked(m.body)) for m in thread.unanswered]
    asking = [(m, qs) for m, qs in asking if qs]
    due = [
        (m, qs)
        for m, qs in asking
        if days_between(m.occurred_at, now) >= config.awaiting_reply_days
    ]
    if not due:
        return None
    first, first_questions = due[0]
    latest_asking, _ = asking[-1]
    latest = thread.unanswered[-1]
    waiting = days_between(first.occurred_at, now)
    score = round(min(100.0, 50.0 + 50.0 * waiting / config.awaiting_reply_max_age_days), 1)
    open_questions = [{"text": q, "interaction_id": m.id} for m, qs in asking for q in qs]
    subject = latest_asking.subject or first.subject or "(no subject)"
    evidence = {
        "thread_id": thread.thread_id,
        "subject": subject,
        "contact_id": latest_asking.contact_id,
        "threshold_days": config.awaiting_reply_days,
        "days_waiting": waiting,
        "asked_at": iso(first.occurred_at),
        "last_outbound_at": iso(thread.last_outbound_at),
        "unanswered_ids": [m.id for m in thread.unanswered],
        "asking": [
            {"interaction_id": m.id, "occurred_at": iso(m.occurred_at), "questions": qs}
            for m, qs in asking
        ],
        "interaction_ids": [m.id for m in thread.unanswered],
    }
    count = len(open_questions)
    summary = (
        f"{latest_asking.sender} asked {count} question{'s' if count != 1 else ''} in "
        f"“{clip(subject, 80)}” {days_text(waiting)} ago, and you have not replied: "
        f"“{clip(first_questions[0], 160)}”"
    )
    return Candidate(
        kind=KIND,
        fingerprint=fingerprint(KIND, f"thread:{thread.thread_id}", f"latest:{latest.id}"),
        contact_id=latest_asking.contact_id,
        title=f"Awaiting your reply: {clip(subject, 200)}"[:300],
        summary=summary,
        evidence=evidence,
        score=score,
        expires_at=now + timedelta(days=config.expiry_days),
        open_questions=open_questions,
        basis={
            "thread": thread.thread_id,
            "latest": latest.id,
            "questions": open_questions,
        },
    )
