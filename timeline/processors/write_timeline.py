"""write_timeline: the timeline events of a batch's interactions, chunk by chunk.

Started by `extract_contacts` through jobs.pipeline.start_next_stages, in its batch and with its
``source`` (the provider whose interactions of the batch to take; "" for all). Works from the
batch id (the participants of the batch's interactions), one statement per chunk
of interactions; past the deadline it stops between chunks and continues in a new job of the
same batch from `after_id` (the last interaction id done). Metrics: itemsFetched = interactions
done, itemsInserted = events inserted, itemsSkipped = events unchanged, details
{"itemsUpdated", "deleted", "chunks"}. The last stage of its branch: it starts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from django.db import transaction

from contacts.selectors import batch_interaction_ids
from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import Job
from jobs.payloads import Payload
from timeline.services import TimelineReport, timeline_events_write

CHUNK_SIZE = 500


@dataclass(frozen=True)
class WriteTimelinePayload(Payload):
    # the provider whose interactions of the batch to take ("" for all)
    source: str = ""
    # interactions up to this id are done (a continuation's starting point)
    after_id: int = 0


def _metrics(report: TimelineReport, *, timed_out: bool = False) -> Metrics:
    return Metrics(
        items_fetched=report.interactions,
        items_inserted=report.inserted,
        items_skipped=report.unchanged,
        timed_out=timed_out,
        details={
            "itemsUpdated": report.updated,
            "deleted": report.deleted,
            "chunks": report.chunks,
        },
    )


@processor("write_timeline", payload=WriteTimelinePayload)
def run(job: Job, ctx: JobContext) -> Metrics:
    payload = cast(WriteTimelinePayload, ctx.payload)
    report = TimelineReport()
    ctx.track(lambda: _metrics(report))
    ids = [
        pk
        for pk in batch_interaction_ids(
            user_id=ctx.user_id, batch_id=ctx.batch_id, source=payload.source
        )
        if pk > payload.after_id
    ]
    for start in range(0, len(ids), CHUNK_SIZE):
        chunk = ids[start : start + CHUNK_SIZE]
        with transaction.atomic():
            ctx.fence()
            report.add(timeline_events_write(user_id=ctx.user_id, interaction_ids=chunk))
        if start + CHUNK_SIZE < len(ids) and ctx.deadline_reached():
            ctx.continue_with(WriteTimelinePayload(source=payload.source, after_id=chunk[-1]))
            return _metrics(report, timed_out=True)
    return _metrics(report)
