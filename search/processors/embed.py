"""embed: documents and embeddings of a user's interactions, for search.

Two scopes, one kind:

- ``batch`` (default): the interactions of the job's batch (of one provider with ``source``,
  as normalization passes it; "" for all). Started by normalization (jobs.pipeline: a side
  branch beside extract_contacts, so nothing waits for it) in a lane of its own
  (jobs.pipeline.stage_key). When the user's embeddings of the configured
  model are not complete yet, it checks whether every interaction of the user now has them (a
  new user's first batch), unless a later batch-scope embed job of the user is still active
  (the batch's other provider: that job checks at its end instead, so a first sync does not
  start a needless ``all`` pass): then the set is complete; else (a model switch, mail stored before
  search was installed, other batches still running) it starts the ``all`` scope for the user
  once it succeeds.
- ``all``: every interaction of the user up to the newest one when the pass started
  (``until_id``), at priority 5 in the lane ``embed:all:{user_id}``; documents already stored
  are reused, so it costs provider calls only for chunks this model lacks. At the end it checks
  that no document up to ``until_id`` lacks a vector of the model, marks the user's set
  complete (search switches to it) and deletes the user's vectors of other models. Started by
  the batch scope, or by ``manage.py embeddings rebuild``.

Chunks of `embed_chunk_size` interactions, each written in fenced transactions: first the
documents (search.services.search_documents_write), then the vectors (documents_embed); past
the deadline it stops between chunks and continues from ``after_id``. A provider failure that
may pass (outage, 429, timeout) is a TransientError with the provider's Retry-After, so the job
retries with backoff; any other (a bad key, an unknown model, missing weights) is a
PermanentError naming the provider's message. Either way the documents of every chunk are
written first, so full-text search covers the batch. Metrics: itemsFetched = interactions read,
itemsInserted = chunks embedded, itemsSkipped = chunks unchanged (no provider call); details:
model, dims, documentsWritten, documentsUnchanged, chunksDeleted, providerCalls, chunks,
and for the ``all`` scope complete / switched / otherModelRowsDeleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from contacts.selectors import batch_interaction_ids
from jobs.context import JobContext, Metrics
from jobs.dispatcher import processor
from jobs.errors import PermanentError, TransientError
from jobs.models import Interaction, Job
from jobs.models.job import ACTIVE_STATUSES
from jobs.payloads import Payload
from search.conf import get_config
from search.embedding import EmbeddingError, EmbeddingProvider, get_provider
from search.models import EmbeddingSet
from search.selectors import embedding_set_missing, provider_settings
from search.services import (
    ChunkingRules,
    EmbedReport,
    documents_embed,
    embedding_set_complete,
    embeddings_of_other_models_delete,
    search_documents_write,
)

KIND = "embed"
SCOPES = ("batch", "all")
ALL_PRIORITY = 5
# A pass of the `all` scope that ends with documents still missing a vector (a batch changed
# them meanwhile) starts over, at most this many times.
MAX_PASSES = 3


@dataclass(frozen=True)
class EmbedPayload(Payload):
    scope: str = "batch"
    # `batch` scope: the provider whose interactions of the batch to take ("" for all)
    source: str = ""
    # interactions up to this id are done (a continuation's starting point)
    after_id: int = 0
    # `all` scope: the newest interaction when the pass started (0: not started yet)
    until_id: int = 0
    passes: int = 0


def _metrics(report: EmbedReport, extra: dict | None = None, *, timed_out: bool = False) -> Metrics:
    return Metrics(
        items_fetched=report.interactions,
        items_inserted=report.chunks_embedded,
        items_skipped=report.chunks_unchanged,
        timed_out=timed_out,
        details={**report.details(), **(extra or {})},
    )


@processor(KIND, payload=EmbedPayload, lane="embed:{scope}:{user_id}")
def run(job: Job, ctx: JobContext) -> Metrics:
    payload = cast(EmbedPayload, ctx.payload)
    if payload.scope not in SCOPES:
        raise PermanentError(f"unknown embed scope {payload.scope!r}; one of: {', '.join(SCOPES)}")
    report = EmbedReport()
    extra: dict = {}
    ctx.track(lambda: _metrics(report, extra))
    config = get_config()
    rules = ChunkingRules(
        overlap_tokens=config.chunk_overlap_tokens,
        max_chunks=config.max_chunks_per_interaction,
        batch_size=config.batch_size,
        reply_languages=tuple(config.reply_languages.split(",")),
    )
    settings = provider_settings(config)
    if payload.scope == "batch":
        ids = [
            pk
            for pk in batch_interaction_ids(
                user_id=ctx.user_id, batch_id=ctx.batch_id, source=payload.source
            )
            if pk > payload.after_id
        ]
        until_id = 0
    else:
        until_id = payload.until_id or _newest_interaction_id(ctx.user_id)
        ids = list(
            Interaction.objects.filter(
                user_id=ctx.user_id, id__gt=payload.after_id, id__lte=until_id
            )
            .order_by("id")
            .values_list("id", flat=True)
        )
    # A provider failure stops the embedding, not the documents: the remaining chunks' documents
    # are still written (full-text search does not wait for the provider), then the job fails
    # or retries with the provider's error.
    failure: EmbeddingError | None = None
    provider: EmbeddingProvider | None = None
    size = config.embed_chunk_size
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        documents, written = search_documents_write(
            user_id=ctx.user_id,
            interaction_ids=chunk,
            rules=rules,
            fence=ctx.fence,
            reuse_documents=payload.scope == "all",
        )
        report.add(written)
        if failure is None:
            try:
                provider = provider or get_provider()
                report.add(
                    documents_embed(
                        user_id=ctx.user_id,
                        documents=documents,
                        provider=provider,
                        provider_settings=settings,
                        rules=rules,
                        fence=ctx.fence,
                    )
                )
            except EmbeddingError as exc:
                failure = exc
        if start + size < len(ids):
            if ctx.deadline_reached():
                if failure is not None:
                    break
                ctx.continue_with(
                    EmbedPayload(
                        scope=payload.scope,
                        source=payload.source,
                        after_id=chunk[-1],
                        until_id=until_id,
                        passes=payload.passes,
                    )
                )
                return _metrics(report, extra, timed_out=True)
            ctx.checkpoint()
    try:
        if failure is not None:
            raise failure
        provider = provider or get_provider()
        model, dims = provider.model, provider.dims
    except EmbeddingError as exc:
        if exc.transient:
            raise TransientError(
                f"embedding provider: {exc}", retry_after=exc.retry_after_s
            ) from exc
        raise PermanentError(f"embedding provider: {exc}") from exc
    report.model, report.dims = model, dims

    if payload.scope == "batch":
        sets = EmbeddingSet.objects.filter(user_id=ctx.user_id)
        complete = sets.filter(model=model, dims=dims, status=EmbeddingSet.Status.COMPLETE).exists()
        later = (
            None
            if complete
            else Job.objects.filter(
                user_id=ctx.user_id, kind=KIND, status__in=ACTIVE_STATUSES, pk__gt=job.pk
            )
            .exclude(payload__scope="all")
            .order_by("pk")
            .values_list("pk", flat=True)
            .first()
        )
        if later is not None:
            # A later batch-scope job of the user (the other provider of this batch, or another
            # batch) is still to finish: it makes the same check at its end, with more embedded.
            extra["completionLeftTo"] = later
        elif not complete:
            if embedding_set_missing(user_id=ctx.user_id, model=model, dims=dims) == 0:
                # every interaction of the user has its vectors (a new user's first batch)
                extra["switched"] = embedding_set_complete(
                    user_id=ctx.user_id,
                    model=model,
                    dims=dims,
                    provider_settings=settings,
                    fence=ctx.fence,
                )
                extra["complete"] = True
                if sets.exclude(model=model, dims=dims).exists():
                    # another model's vectors to delete: the `all` scope does it, off this
                    # batch's path (it finds nothing left to embed)
                    newest = _newest_interaction_id(ctx.user_id)
                    ctx.start_chain(
                        KIND,
                        EmbedPayload(scope="all", after_id=newest, until_id=newest),
                        priority=ALL_PRIORITY,
                    )
            else:
                ctx.start_chain(KIND, EmbedPayload(scope="all"), priority=ALL_PRIORITY)
                extra["allScopeStarted"] = True
        return _metrics(report, extra)

    missing = embedding_set_missing(user_id=ctx.user_id, model=model, dims=dims, until_id=until_id)
    extra["missing"] = missing
    if missing:
        if payload.passes + 1 >= MAX_PASSES:
            raise PermanentError(
                f"{missing} document(s) still have no {model} vector after {MAX_PASSES} passes"
            )
        ctx.continue_with(EmbedPayload(scope="all", passes=payload.passes + 1))
        return _metrics(report, extra)
    extra["switched"] = embedding_set_complete(
        user_id=ctx.user_id, model=model, dims=dims, provider_settings=settings, fence=ctx.fence
    )
    extra["complete"] = True
    deleted, finished = embeddings_of_other_models_delete(
        user_id=ctx.user_id,
        model=model,
        dims=dims,
        fence=ctx.fence,
        should_stop=ctx.deadline_reached,
    )
    extra["otherModelRowsDeleted"] = deleted
    if not finished:
        # the set is complete: the continuation finds nothing to embed and deletes the rest
        ctx.continue_with(EmbedPayload(scope="all", after_id=until_id, until_id=until_id))
        return _metrics(report, extra, timed_out=True)
    return _metrics(report, extra)


def _newest_interaction_id(user_id: int) -> int:
    newest = (
        Interaction.objects.filter(user_id=user_id).order_by("-id").values_list("id", flat=True)
    ).first()
    return newest or 0
