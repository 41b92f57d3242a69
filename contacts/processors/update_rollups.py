"""update_rollups: recompute the rollups of the contacts a batch touched, chunk by chunk.

Started by `extract_contacts` through jobs.pipeline.start_next_stages, in its batch and with its
``source``: the contacts taking part in the batch's interactions of that provider ("" for all),
and the contacts they were merged into.
With ``all_contacts=True`` (the nightly schedule, contacts.rollups.rollups_nightly) every live
contact of the user instead. One statement per chunk of contacts (see contacts/rollups.py);
past the deadline it stops between chunks and continues in a new job from `after_id` (the last
contact id done). Metrics: itemsFetched = contacts refreshed, itemsInserted = 0 (rollups are
updated in place), itemsSkipped = contacts whose figures had not changed, details
{"itemsUpdated", "chunks"}. When done it starts the stages that follow (generate_insights), with
the same source.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from django.db import transaction

from contacts.rollups import contact_rollups_refresh, live_contact_ids, touched_contact_ids
from contacts.selectors import batch_interaction_ids
from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import Job
from jobs.payloads import Payload
from jobs.pipeline import start_next_stages

CHUNK_SIZE = 500


@dataclass(frozen=True)
class UpdateRollupsPayload(Payload):
    # the provider whose interactions of the batch to take ("" for all)
    source: str = ""
    # every live contact of the user instead of the batch's (the nightly refresh)
    all_contacts: bool = False
    # contacts up to this id are done (a continuation's starting point)
    after_id: int = 0


@dataclass(slots=True)
class _Progress:
    contacts: int = 0
    updated: int = 0
    chunks: int = 0

    def metrics(self, *, timed_out: bool = False) -> Metrics:
        return Metrics(
            items_fetched=self.contacts,
            items_inserted=0,
            items_skipped=self.contacts - self.updated,
            timed_out=timed_out,
            details={"itemsUpdated": self.updated, "chunks": self.chunks},
        )


@processor("update_rollups", payload=UpdateRollupsPayload)
def run(job: Job, ctx: JobContext) -> Metrics:
    payload = cast(UpdateRollupsPayload, ctx.payload)
    progress = _Progress()
    ctx.track(progress.metrics)
    chunks: Iterator[list[int]]
    if payload.all_contacts:
        chunks = _all_contacts(ctx.user_id, payload.after_id)
    else:
        interactions = batch_interaction_ids(
            user_id=ctx.user_id, batch_id=ctx.batch_id, source=payload.source
        )
        contacts = touched_contact_ids(user_id=ctx.user_id, interaction_ids=interactions)
        contacts = [pk for pk in contacts if pk > payload.after_id]
        chunks = iter([contacts[i : i + CHUNK_SIZE] for i in range(0, len(contacts), CHUNK_SIZE)])
    chunk: list[int] = next(chunks, [])
    while chunk:
        with transaction.atomic():
            ctx.fence()
            progress.updated += contact_rollups_refresh(user_id=ctx.user_id, contact_ids=chunk)
        progress.contacts += len(chunk)
        progress.chunks += 1
        following: list[int] = next(chunks, [])
        if following and ctx.deadline_reached():
            ctx.continue_with(
                UpdateRollupsPayload(
                    source=payload.source, all_contacts=payload.all_contacts, after_id=chunk[-1]
                )
            )
            return progress.metrics(timed_out=True)
        chunk = following
    # The stage graph goes on (generate_insights, when the insights app is installed).
    start_next_stages(ctx, {"source": payload.source})
    return progress.metrics()


def _all_contacts(user_id: int, after_id: int) -> Iterator[list[int]]:
    """Chunks of the user's live contacts by id, read one chunk ahead (one query a chunk)."""
    while chunk := live_contact_ids(user_id=user_id, after_id=after_id, limit=CHUNK_SIZE):
        yield chunk
        after_id = chunk[-1]
