"""extract_contacts: the batch's interactions to contacts, identities and participants.

Enqueued by normalization (jobs.pipeline) in the batch of the raw events it normalized; works from
``ctx.batch_id`` (contacts.selectors.batch_interaction_ids), chunk by chunk. Payload: ``source``
(the provider whose interactions of the batch to take, as normalization passes it; "" for all),
``after_id`` (continuations: interactions up to this id are done). Metrics: itemsFetched =
interactions read, itemsInserted = participants inserted, itemsSkipped = participants already there
unchanged; details: contactsCreated, excluded (by rule), duplicatesLinked, ... (see
contacts.services.extract.ExtractReport.details). Past the deadline it stops between chunks and
continues in a new job of the same batch; when done it starts the next stages (write_timeline,
update_rollups) for the batch and the same source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from contacts.selectors import batch_interaction_ids
from contacts.services.extract import ExtractReport, contacts_extract
from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.models import Job
from jobs.payloads import Payload
from jobs.pipeline import start_next_stages

KIND = "extract_contacts"


@dataclass(frozen=True)
class ExtractContactsPayload(Payload):
    source: str = ""
    after_id: int = 0


def metrics_of(report: ExtractReport) -> Metrics:
    return Metrics(
        items_fetched=report.interactions,
        items_inserted=report.inserted,
        items_skipped=report.linked - report.inserted - report.updated,
        timed_out=report.stopped,
        details=report.details(),
    )


@processor(KIND, payload=ExtractContactsPayload)
def run(job: Job, ctx: JobContext) -> Metrics:
    payload = cast(ExtractContactsPayload, ctx.payload)
    report = ExtractReport()
    ctx.track(lambda: metrics_of(report))
    ids = [
        i
        for i in batch_interaction_ids(
            user_id=ctx.user_id, batch_id=ctx.batch_id, source=payload.source
        )
        if i > payload.after_id
    ]

    def on_chunk(so_far: ExtractReport) -> None:
        nonlocal report
        report = so_far

    def should_stop() -> bool:
        if ctx.deadline_reached():
            return True
        ctx.checkpoint()  # an operator's cancel stops the job between chunks
        return False

    report = contacts_extract(
        user_id=ctx.user_id,
        interaction_ids=ids,
        should_stop=should_stop,
        in_transaction=ctx.fence,
        on_chunk=on_chunk,
    )
    if report.stopped:
        ctx.continue_with(ExtractContactsPayload(source=payload.source, after_id=report.last_id))
    else:
        start_next_stages(ctx, {"source": payload.source})
    return metrics_of(report)
