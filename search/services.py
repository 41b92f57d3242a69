"""Writes of the search app: documents, embedding chunks, embedding sets.

One chunk of the embed stage, for a user's interactions:

1. documents (`search_documents_write`): subject + cleaned body (search/text.py), upserted in
   one statement, an unchanged text (same hash) not rewritten; written before and whatever the
   provider does, so full-text search covers new mail during an outage;
2. chunks (`documents_embed`): each document cut to the model's token limit, each chunk
   hashed; a chunk whose hash is already stored for this model costs no provider call;
3. the provider, outside any transaction, in batches of `batch_size` texts (a text that occurs
   twice is embedded once);
4. the vectors upserted and the chunks a shorter text no longer has deleted, in one fenced
   transaction.

Every statement is scoped to the user and reaches rows by key. The caller passes `fence`
(JobContext.fence), called first in each write transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection, transaction
from pgvector import Vector

from jobs.models import Interaction, InteractionKind
from search.embedding.base import EmbeddingError, EmbeddingProvider
from search.indexes import hnsw_index_ensure, space_predicate
from search.models import Embedding, EmbeddingSet, SearchDocument
from search.text import REPLY_LANGUAGES, chunk_document, clean_body, content_hash

_DOC = SearchDocument._meta.db_table
_EMB = Embedding._meta.db_table
_SET = EmbeddingSet._meta.db_table


@dataclass(frozen=True, slots=True)
class ChunkingRules:
    """How documents are cut and how many texts go in one provider call."""

    overlap_tokens: int = 32
    max_chunks: int = 16
    batch_size: int = 64
    reply_languages: tuple[str, ...] = REPLY_LANGUAGES


@dataclass(slots=True)
class EmbedReport:
    """What the embed stage did: interactions read, documents written (new or changed) and
    unchanged, chunks embedded (provider vectors written) and unchanged (hash already stored),
    chunks deleted (a text that got shorter), provider calls, write chunks."""

    interactions: int = 0
    documents_written: int = 0
    documents_unchanged: int = 0
    chunks_embedded: int = 0
    chunks_unchanged: int = 0
    chunks_deleted: int = 0
    provider_calls: int = 0
    chunks: int = 0
    model: str = ""
    dims: int = 0

    def add(self, other: EmbedReport) -> None:
        for name in (
            "interactions",
            "documents_written",
            "documents_unchanged",
            "chunks_embedded",
            "chunks_unchanged",
            "chunks_deleted",
            "provider_calls",
            "chunks",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.model = other.model or self.model
        self.dims = other.dims or self.dims

    def details(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dims": self.dims,
            "documentsWritten": self.documents_written,
            "documentsUnchanged": self.documents_unchanged,
            "chunksDeleted": self.chunks_deleted,
            "providerCalls": self.provider_calls,
            "chunks": self.chunks,
        }


@dataclass(frozen=True, slots=True)
class SearchDocumentText:
    """A document as the embed stage reads and writes it."""

    interaction_id: int
    subject: str
    body: str
    content_hash: str


_DOCUMENTS_SQL = f"""
WITH written AS (
    INSERT INTO {_DOC} AS d (interaction_id, user_id, subject, body, content_hash, updated_at)
    SELECT x.interaction_id, %(user_id)s, x.subject, x.body, x.content_hash,
           statement_timestamp()
      FROM unnest(%(ids)s::int8[], %(subjects)s::text[], %(bodies)s::text[],
                  %(hashes)s::text[]) AS x(interaction_id, subject, body, content_hash)
    ON CONFLICT (interaction_id) DO UPDATE
       SET subject = EXCLUDED.subject, body = EXCLUDED.body,
           content_hash = EXCLUDED.content_hash, updated_at = EXCLUDED.updated_at
     WHERE d.content_hash IS DISTINCT FROM EXCLUDED.content_hash AND d.user_id = %(user_id)s
    RETURNING 1
)
SELECT count(*) FROM written
"""


def _documents_of(
    *, user_id: int, interaction_ids: Sequence[int], rules: ChunkingRules, reuse: bool
) -> tuple[list[SearchDocumentText], list[SearchDocumentText]]:
    """(documents of the user's interactions among the ids, those of them to write).

    With `reuse`, an interaction that has a document keeps it (the backfill: a document is
    rewritten by the batch that changes its interaction), so only the others are built and
    written; without, every one is built from its interaction and written unless unchanged."""
    stored: dict[int, SearchDocumentText] = {}
    if reuse:
        for row in SearchDocument.objects.filter(
            user_id=user_id, interaction_id__in=interaction_ids
        ).values_list("interaction_id", "subject", "body", "content_hash"):
            stored[row[0]] = SearchDocumentText(*row)
    documents = list(stored.values())
    missing = [pk for pk in interaction_ids if pk not in stored]
    rows = Interaction.objects.filter(user_id=user_id, id__in=missing).values_list(
        "id", "kind", "subject", "body_text"
    )
    for pk, kind, subject, body_text in rows:
        subject = (subject or "").strip()
        if kind == InteractionKind.MEETING:
            body = (body_text or "").strip()
        else:
            body = clean_body(body_text or "", languages=rules.reply_languages)
        documents.append(SearchDocumentText(pk, subject, body, content_hash(f"{subject}\0{body}")))
    documents.sort(key=lambda d: d.interaction_id)
    return documents, [d for d in documents if d.interaction_id not in stored]


def _existing_hashes(
    *, user_id: int, model: str, dims: int, interaction_ids: Sequence[int]
) -> dict[tuple[int, int], str]:
    rows = Embedding.objects.filter(
        user_id=user_id, model=model, dims=dims, interaction_id__in=interaction_ids
    ).values_list("interaction_id", "chunk", "content_hash")
    return {(i, c): h for i, c, h in rows}


_UPSERT_SQL = f"""
INSERT INTO {_EMB} AS e
       (user_id, interaction_id, model, dims, chunk, content_hash, text, vector, created_at)
SELECT %(user_id)s, x.interaction_id, %(model)s, %(dims)s, x.chunk, x.content_hash, x.text,
       x.vector::vector, statement_timestamp()
  FROM unnest(%(ids)s::int8[], %(chunks)s::int4[], %(hashes)s::text[], %(texts)s::text[],
              %(vectors)s::text[]) AS x(interaction_id, chunk, content_hash, text, vector)
ON CONFLICT (interaction_id, model, dims, chunk) DO UPDATE
   SET content_hash = EXCLUDED.content_hash, text = EXCLUDED.text, vector = EXCLUDED.vector,
       created_at = EXCLUDED.created_at
 WHERE e.user_id = %(user_id)s
"""

_STALE_SQL = f"""
DELETE FROM {_EMB} AS e
 USING unnest(%(ids)s::int8[], %(counts)s::int4[]) AS x(interaction_id, n)
 WHERE e.interaction_id = x.interaction_id AND e.user_id = %(user_id)s
   AND e.model = %(model)s AND e.dims = %(dims)s AND e.chunk >= x.n
"""

_SET_SQL = f"""
INSERT INTO {_SET} (user_id, model, dims, provider_settings, status, created_at, updated_at)
VALUES (%(user_id)s, %(model)s, %(dims)s, %(settings)s::jsonb, %(status)s,
        statement_timestamp(), statement_timestamp())
ON CONFLICT (user_id, model, dims) DO NOTHING
"""


def search_documents_write(
    *,
    user_id: int,
    interaction_ids: Sequence[int],
    rules: ChunkingRules,
    fence: Callable[[], None],
    reuse_documents: bool = False,
) -> tuple[list[SearchDocumentText], EmbedReport]:
    """Write the documents of the user's interactions `interaction_ids` (one fenced statement;
    an unchanged text is not rewritten); (the documents, what was written). Interactions of
    another user are ignored. With `reuse_documents`, an interaction that has a document keeps
    it unread (the backfill)."""
    ids = sorted(set(interaction_ids))
    report = EmbedReport()
    if not ids:
        return [], report
    documents, fresh = _documents_of(
        user_id=user_id, interaction_ids=ids, rules=rules, reuse=reuse_documents
    )
    report.interactions = len(documents)
    if fresh:
        with transaction.atomic():
            fence()
            with connection.cursor() as cursor:
                cursor.execute(
                    _DOCUMENTS_SQL,
                    {
                        "user_id": user_id,
                        "ids": [d.interaction_id for d in fresh],
                        "subjects": [d.subject for d in fresh],
                        "bodies": [d.body for d in fresh],
                        "hashes": [d.content_hash for d in fresh],
                    },
                )
                report.documents_written = cursor.fetchone()[0]
    report.documents_unchanged = len(documents) - report.documents_written
    report.chunks = 1
    return documents, report


def documents_embed(
    *,
    user_id: int,
    documents: Sequence[SearchDocumentText],
    provider: EmbeddingProvider,
    provider_settings: dict[str, Any],
    rules: ChunkingRules,
    fence: Callable[[], None],
) -> EmbedReport:
    """Embed the chunks of `documents` (the user's) that this model lacks or that changed,
    and delete the chunks a shorter text no longer has (see the module doc).

    Raises EmbeddingError from the provider before any vector is written; LeaseLost from
    `fence`.
    """
    model, dims = provider.model, provider.dims
    report = EmbedReport(model=model, dims=dims)
    ids = [d.interaction_id for d in documents]
    if not ids:
        return report
    existing = _existing_hashes(user_id=user_id, model=model, dims=dims, interaction_ids=ids)
    limit = provider.max_tokens
    wanted: list[tuple[int, int, str, str]] = []  # (interaction, chunk, hash, text)
    counts: dict[int, int] = {}
    for document in documents:
        chunks = chunk_document(
            subject=document.subject,
            body=document.body,
            count_tokens=provider.count_tokens,
            max_tokens=limit,
            overlap_tokens=rules.overlap_tokens,
            max_chunks=rules.max_chunks,
        )
        counts[document.interaction_id] = len(chunks)
        for chunk in chunks:
            if existing.get((document.interaction_id, chunk.index)) == chunk.content_hash:
                report.chunks_unchanged += 1
            else:
                wanted.append(
                    (document.interaction_id, chunk.index, chunk.content_hash, chunk.text)
                )
    stale = any(index >= counts.get(pk, index + 1) for pk, index in existing)

    vectors: dict[str, str] = {}
    texts = list(dict.fromkeys(text for _, _, _, text in wanted))
    for start in range(0, len(texts), rules.batch_size):
        batch = texts[start : start + rules.batch_size]
        embedded = provider.embed(batch)
        report.provider_calls += 1
        _check_vectors(embedded, count=len(batch), dims=dims, model=model)
        for text, vector in zip(batch, embedded, strict=True):
            vectors[text] = str(Vector._to_db(np.asarray(vector, dtype=np.float32)))

    if not (wanted or stale):
        return report
    hnsw_index_ensure(model=model, dims=dims)
    with transaction.atomic():
        fence()
        with connection.cursor() as cursor:
            if wanted:
                cursor.execute(
                    _SET_SQL,
                    {
                        "user_id": user_id,
                        "model": model,
                        "dims": dims,
                        "settings": _json(provider_settings),
                        "status": EmbeddingSet.Status.BUILDING,
                    },
                )
                cursor.execute(
                    _UPSERT_SQL,
                    {
                        "user_id": user_id,
                        "model": model,
                        "dims": dims,
                        "ids": [w[0] for w in wanted],
                        "chunks": [w[1] for w in wanted],
                        "hashes": [w[2] for w in wanted],
                        "texts": [w[3] for w in wanted],
                        "vectors": [vectors[w[3]] for w in wanted],
                    },
                )
                report.chunks_embedded = cursor.rowcount
            if stale:
                cursor.execute(
                    _STALE_SQL,
                    {
                        "user_id": user_id,
                        "model": model,
                        "dims": dims,
                        "ids": list(counts),
                        "counts": list(counts.values()),
                    },
                )
                report.chunks_deleted = cursor.rowcount
    return report


def _check_vectors(vectors: Any, *, count: int, dims: int, model: str) -> None:
    shape = getattr(vectors, "shape", None)
    if shape != (count, dims):
        raise EmbeddingError(
            f"embedding model {model} returned vectors of shape {shape}, expected"
            f" ({count}, {dims})",
            transient=False,
        )


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# --- embedding sets (model switch) -------------------------------------------------------------


def embedding_set_complete(
    *,
    user_id: int,
    model: str,
    dims: int,
    provider_settings: dict[str, Any],
    fence: Callable[[], None],
) -> bool:
    """Mark the user's set of this model complete (search switches to it); True when this call
    changed it. The caller has checked `embedding_set_missing` is 0."""
    with transaction.atomic():
        fence()
        with connection.cursor() as cursor:
            cursor.execute(
                _SET_SQL,
                {
                    "user_id": user_id,
                    "model": model,
                    "dims": dims,
                    "settings": _json(provider_settings),
                    "status": EmbeddingSet.Status.BUILDING,
                },
            )
            cursor.execute(
                f"""
                UPDATE {_SET} SET status = %(complete)s, completed_at = statement_timestamp(),
                       updated_at = statement_timestamp()
                 WHERE user_id = %(user_id)s AND model = %(model)s AND dims = %(dims)s
                   AND status <> %(complete)s
                """,
                {
                    "user_id": user_id,
                    "model": model,
                    "dims": dims,
                    "complete": EmbeddingSet.Status.COMPLETE,
                },
            )
            return cursor.rowcount == 1


def embeddings_of_other_models_delete(
    *,
    user_id: int,
    model: str,
    dims: int,
    fence: Callable[[], None],
    batch_rows: int = 5000,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[int, bool]:
    """After a switch: delete the user's vectors of every other model, `batch_rows` per fenced
    transaction, then those models' sets. (rows deleted, finished)."""
    deleted = 0
    keep = space_predicate(model=model, dims=dims)
    while True:
        with transaction.atomic():
            fence()
            with connection.cursor() as cursor:
                cursor.execute(
                    f"""
                    DELETE FROM {_EMB} WHERE id = ANY(ARRAY(
                        SELECT id FROM {_EMB}
                         WHERE user_id = %(user_id)s AND NOT ({keep})
                         LIMIT %(n)s))
                    """,
                    {"user_id": user_id, "n": batch_rows},
                )
                count = cursor.rowcount
                deleted += count
                if count < batch_rows:
                    cursor.execute(
                        f"DELETE FROM {_SET} WHERE user_id = %(user_id)s AND NOT ({keep})",
                        {"user_id": user_id},
                    )
                    return deleted, True
        if should_stop():
            return deleted, False


def embeddings_rebuild_enqueue(*, user_id: int) -> Any:
    """Start the `all` scope of the embed stage for a user (the lane `embed:all:{user_id}`
    returns the job already active, if any): after a model change, or to embed interactions
    stored before search was installed. The Job; enqueued on commit."""
    from jobs.enqueue import enqueue

    return enqueue("embed", user=user_id, payload={"scope": "all"}, priority=5)
