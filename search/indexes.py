"""The HNSW indexes of the embedding column: one partial expression index per (model, dims).

The `vector` column holds every model's vectors, so it has no fixed size and cannot be indexed
as it is. pgvector's documented approach for mixed dimensions is an expression index over a cast
to the model's size, restricted to that model's rows::

    CREATE INDEX ... ON search_embedding
     USING hnsw ((vector::vector(384)) vector_cosine_ops)
     WHERE model = 'sentence-transformers/all-MiniLM-L6-v2' AND dims = 384

A query uses it when it orders by ``vector::vector(384) <=> %s::vector(384)`` and its WHERE
names the same model and dims (search/selectors.py). The default model's index is created by a
migration; any other model's is created when the embed stage first writes its vectors
(`hnsw_index_ensure`), concurrently where it can (outside a transaction), so writes go on.
pgvector indexes `vector` up to 2,000 dimensions: a larger model gets no index (exact scans).
"""

from __future__ import annotations

import hashlib
import logging

from django.db import connection

from search.models import Embedding

logger = logging.getLogger(__name__)

HNSW_MAX_DIMS = 2000
# HNSW build parameters (pgvector's defaults, written out so they are on record).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
_TABLE = Embedding._meta.db_table
# Serializes index creation between workers (an arbitrary, fixed advisory-lock key).
_LOCK_KEY = 0x5EA4C4_0001

_checked: set[tuple[str, int]] = set()


def hnsw_index_name(*, model: str, dims: int) -> str:
    """A stable name that fits PostgreSQL's 63 characters whatever the model's name."""
    digest = hashlib.blake2b(f"{model}\0{dims}".encode(), digest_size=6).hexdigest()
    return f"embedding_hnsw_{dims}_{digest}"


def quote_literal(value: str) -> str:
    """A SQL string literal (standard_conforming_strings is on in every supported Postgres)."""
    return "'" + value.replace("'", "''") + "'"


def space_predicate(*, model: str, dims: int, alias: str = "") -> str:
    """The WHERE condition naming one space, spelled as the partial index's predicate: literals,
    not parameters, so the planner can prove a query's WHERE implies the index's."""
    prefix = f"{alias}." if alias else ""
    return f"{prefix}model = {quote_literal(model)} AND {prefix}dims = {int(dims)}"


def hnsw_index_sql(*, model: str, dims: int, concurrently: bool = False) -> str:
    return (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS "
        f"{hnsw_index_name(model=model, dims=dims)} ON {_TABLE} "
        f"USING hnsw ((vector::vector({int(dims)})) vector_cosine_ops) "
        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) "
        f"WHERE {space_predicate(model=model, dims=dims)}"
    )


def hnsw_index_state(*, model: str, dims: int) -> str:
    """'valid', 'invalid' (a concurrent build that failed) or 'missing'."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
            [hnsw_index_name(model=model, dims=dims)],
        )
        row = cursor.fetchone()
    if row is None:
        return "missing"
    return "valid" if row[0] else "invalid"


def hnsw_index_ensure(*, model: str, dims: int) -> bool:
    """Create the space's HNSW index unless it exists; True when this call created it.

    Outside a transaction the build is CONCURRENTLY (writes to the table go on), under a
    session advisory lock so two workers never build it twice; an invalid leftover of a failed
    concurrent build is dropped and built again. Inside a transaction (tests, a caller's atomic
    block) it is a plain CREATE INDEX. Checked once per process and space.
    """
    if (model, dims) in _checked:
        return False
    if dims > HNSW_MAX_DIMS:
        logger.warning(
            "embedding model %s has %d dimensions, more than pgvector indexes (%d): its"
            " searches scan exactly",
            model,
            dims,
            HNSW_MAX_DIMS,
        )
        _checked.add((model, dims))
        return False
    state = hnsw_index_state(model=model, dims=dims)
    created = False
    if state != "valid":
        concurrently = not connection.in_atomic_block
        with connection.cursor() as cursor:
            if concurrently:
                cursor.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY])
            try:
                state = hnsw_index_state(model=model, dims=dims)
                if state == "invalid":
                    cursor.execute(
                        f"DROP INDEX {'CONCURRENTLY ' if concurrently else ''}IF EXISTS "
                        f"{hnsw_index_name(model=model, dims=dims)}"
                    )
                if state != "valid":
                    if not concurrently:
                        # a transaction with pending foreign-key checks (Django's are deferred)
                        # cannot create an index on the table: check them now, then defer again
                        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                    cursor.execute(
                        hnsw_index_sql(model=model, dims=dims, concurrently=concurrently)
                    )
                    if not concurrently:
                        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
                    created = True
                    logger.info("created HNSW index for embedding model %s (%d)", model, dims)
            finally:
                if concurrently:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])
    _checked.add((model, dims))
    return created


def forget_checked_indexes() -> None:
    """Forget which indexes this process has seen (tests that drop and recreate them)."""
    _checked.clear()
