"""Storage: one HNSW index per embedding model (a partial expression index over the cast to the
model's size), used by the search query; another model's index created on first use."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from jobs.models import Interaction
from search.indexes import hnsw_index_ensure, hnsw_index_name, hnsw_index_state
from search.models import Embedding
from search.selectors import _Filters, vector_candidates_sql, vector_search_is_exact
from tests.search.mail import NOW

pytestmark = pytest.mark.django_db

DEFAULT_MODEL, DEFAULT_DIMS = "sentence-transformers/all-MiniLM-L6-v2", 384


def store_vectors(users, *, model: str, dims: int, per_user: int, seed: int = 1) -> None:
    """`per_user` interactions per user, each with one random unit vector of `dims`."""
    rng = np.random.default_rng(seed)
    for user in users:
        interactions = Interaction.objects.bulk_create(
            Interaction(
                user=user,
                source="gmail",
                source_id=f"{model}-{user.pk}-{n}",
                kind="email_inbound",
                occurred_at=NOW,
                subject=f"m{n}",
            )
            for n in range(per_user)
        )
        vectors = rng.standard_normal((per_user, dims)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        Embedding.objects.bulk_create(
            Embedding(
                user=user,
                interaction=i,
                model=model,
                dims=dims,
                chunk=0,
                content_hash=f"h{i.pk}",
                text=i.subject,
                vector=v,
            )
            for i, v in zip(interactions, vectors, strict=True)
        )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Embedding._meta.db_table}")


def explain(
    *, user_id: int, model: str, dims: int, since=None, contact_ids=None, exact=False
) -> str:
    """The plan of the search's vector query, with the exact alternative (read the user's rows,
    sort them all) priced out: which path the planner takes depends on how many rows the user
    has (bench/embed.py shows it taking the index by itself over 100,000 vectors); this shows
    the index matches the query (its expression and its WHERE), which is what the code
    decides."""
    sql, params = vector_candidates_sql(
        model=model,
        dims=dims,
        filters=_Filters(user_id=user_id, contact_ids=contact_ids, since=since),
        exact=exact,
    )
    query = np.zeros(dims, dtype=np.float32)
    query[0] = 1.0
    params.update(query="[" + ",".join(str(float(x)) for x in query) + "]", candidates=100)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_a_user_with_few_vectors_is_searched_exactly_and_never_through_hnsw(django_user_model):
    """Up to exact_search_max_vectors a user's vectors are scanned exactly (recall 1): even with
    sorting priced out, the exact query cannot take the HNSW index."""
    users = [django_user_model.objects.create_user(f"u{n}") for n in range(3)]
    store_vectors(users, model=DEFAULT_MODEL, dims=DEFAULT_DIMS, per_user=200)
    space = {"model": DEFAULT_MODEL, "dims": DEFAULT_DIMS}

    assert vector_search_is_exact(user_id=users[0].pk, **space, limit=200)
    assert not vector_search_is_exact(user_id=users[0].pk, **space, limit=199)
    assert not vector_search_is_exact(user_id=users[0].pk, **space, limit=0)

    plan = explain(user_id=users[0].pk, **space, exact=True)
    assert hnsw_index_name(**space) not in plan


def test_the_default_models_hnsw_index_comes_with_the_migration():
    name = hnsw_index_name(model=DEFAULT_MODEL, dims=DEFAULT_DIMS)
    assert hnsw_index_state(model=DEFAULT_MODEL, dims=DEFAULT_DIMS) == "valid"
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
        (definition,) = cursor.fetchone()
    assert "USING hnsw (((vector)::vector(384)) vector_cosine_ops)" in definition
    assert f"WHERE (((model)::text = '{DEFAULT_MODEL}'::text) AND (dims = 384))" in definition


def test_the_search_query_uses_the_models_hnsw_index(django_user_model):
    users = [django_user_model.objects.create_user(f"u{n}") for n in range(3)]
    store_vectors(users, model=DEFAULT_MODEL, dims=DEFAULT_DIMS, per_user=200)

    plan = explain(user_id=users[0].pk, model=DEFAULT_MODEL, dims=DEFAULT_DIMS)

    print(plan)  # the evidence, for the docs
    assert f"Index Scan using {hnsw_index_name(model=DEFAULT_MODEL, dims=DEFAULT_DIMS)}" in plan
    assert "Seq Scan on search_embedding" not in plan

    # with the filters of a contact and a date, the same index
    plan = explain(
        user_id=users[0].pk, model=DEFAULT_MODEL, dims=DEFAULT_DIMS, since=NOW, contact_ids=[1]
    )
    assert f"Index Scan using {hnsw_index_name(model=DEFAULT_MODEL, dims=DEFAULT_DIMS)}" in plan


def test_another_models_index_is_created_on_first_use_and_used_by_its_queries(
    django_user_model,
):
    users = [django_user_model.objects.create_user(f"u{n}") for n in range(3)]
    model, dims = "text-embedding-3-small", 64
    assert hnsw_index_state(model=model, dims=dims) == "missing"

    assert hnsw_index_ensure(model=model, dims=dims) is True
    assert hnsw_index_ensure(model=model, dims=dims) is False  # once

    store_vectors(users, model=model, dims=dims, per_user=200, seed=2)
    # the default model's rows share the table and the column, with another size
    store_vectors(users[:1], model=DEFAULT_MODEL, dims=DEFAULT_DIMS, per_user=50, seed=3)
    plan = explain(user_id=users[1].pk, model=model, dims=dims)
    assert f"Index Scan using {hnsw_index_name(model=model, dims=dims)}" in plan


def test_a_query_reads_only_its_own_models_rows(django_user_model):
    (user,) = [django_user_model.objects.create_user("solo")]
    store_vectors([user], model=DEFAULT_MODEL, dims=DEFAULT_DIMS, per_user=30, seed=4)
    store_vectors([user], model="text-embedding-3-small", dims=64, per_user=30, seed=5)
    sql, params = vector_candidates_sql(
        model="text-embedding-3-small", dims=64, filters=_Filters(user.pk, None, None)
    )
    params.update(query="[" + ",".join(["0.125"] * 64) + "]", candidates=1000)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = {row[0] for row in cursor.fetchall()}
    expected = set(
        Embedding.objects.filter(user=user, model="text-embedding-3-small").values_list(
            "interaction_id", flat=True
        )
    )
    assert ids == expected and len(ids) == 30
