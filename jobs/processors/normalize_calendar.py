"""normalize_calendar: a batch's pending Calendar raw events to meeting interactions.

Same payload, chunking, metrics and chaining as normalize_gmail (see its docstring); enqueue it
with ``{"account_id": account.pk}`` and dedupe_key f"normalize_calendar:{user_id}:{batch_id}".
Raw events are keyed ``f"{calendar_id}/{event_id}"`` with the event resource as payload; the
sync stage may add the events.list response's ``timeZone`` as payload["calendarTimeZone"] so
all-day events start at the calendar's local midnight (UTC midnight without it).
"""

from __future__ import annotations

from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import Job, Provider
from jobs.processors.normalize_gmail import NormalizePayload, normalize_stage


@processor("normalize_calendar", payload=NormalizePayload)
def run(job: Job, ctx: JobContext) -> Metrics:
    return normalize_stage(job, ctx, provider=Provider.CALENDAR)
