"""Benchmark: (a) the local encoder against the machine's GEMM rate, (b) HNSW search over
100,000 stored vectors against an exact scan, one run.

    DEBUG=1 .venv/bin/python bench/embed.py [--vectors 100000] [--queries 200] [--skip-encoder]

(a) comes from bench/embed_encoder.py (`measure()`, see its docstring), when present.

(b) runs in a throwaway database (bench_embed_<pid>, created and migrated on the configured
server, dropped at the end). Data: `vectors` 384-dimensional unit vectors of the default model
(all-MiniLM-L6-v2's space) for the searched user, plus a tenth as many for another user (so the
user filter filters): synthetic, not embeddings of text, drawn with clustered structure like
real embeddings (200 Gaussian clusters around random unit centres, noise 0.5 / sqrt(dims) per
axis, so neighbours within a cluster are close and clusters overlap a little), each with an
Interaction row. They are loaded with COPY and the model's HNSW index (the migration's, m=16,
ef_construction=64) rebuilt once after loading (its build time is printed). Queries: `queries`
new vectors from the same clusters.

Both sides run search.selectors' vector query itself (`vector_candidates_sql`: the user, the
model's space, the duplicate filter; LIMIT = the product's `vector_candidates`, 100), as the
product runs it (hnsw.ef_search = `hnsw_ef_search`, iterative_scan = relaxed_order): HNSW with
the planner's own choice (its plan is printed: it must be the HNSW index), exact with index
scans turned off (enable_indexscan = off: the planner reads the user's rows and sorts them by
exact distance). Each query is run once on each side before timing (warm cache); timings are
the statement's wall time from the client. recall@10 = |HNSW top 10 ∩ exact top 10| / 10,
averaged. Last line: one JSON object {"encoder": {...} | null, "search": {"vectors",
"other_user_vectors", "dims", "queries", "hnsw_p50_ms", "hnsw_p95_ms", "exact_p50_ms",
"exact_p95_ms", "speedup_p50", "recall_at_10", "recall_at_100", "index_build_s",
"plan_uses_hnsw"}}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Running as a script puts bench/ first on sys.path, where bench/queue.py shadows stdlib `queue`.
ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_pipeline.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from jobs.models import Interaction  # noqa: E402
from search.conf import get_config  # noqa: E402
from search.indexes import hnsw_index_name, hnsw_index_sql  # noqa: E402
from search.models import Embedding  # noqa: E402
from search.selectors import _Filters, vector_candidates_sql  # noqa: E402

MODEL, DIMS = "sentence-transformers/all-MiniLM-L6-v2", 384
CLUSTERS = 200


def say(message: str) -> None:
    print(message, flush=True)


def clustered_unit_vectors(count: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = 0.5 / np.sqrt(DIMS)
    picks = rng.integers(0, len(centres), size=count)
    vectors = centres[picks] + rng.standard_normal((count, DIMS)).astype(np.float32) * noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"


def load(user_id: int, vectors: np.ndarray) -> None:
    """Interactions and their embeddings for one user, by COPY."""
    start = Interaction.objects.filter(user_id=user_id).count()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Interaction._meta.db_table}
                   (user_id, source, source_id, kind, occurred_at, occurred_at_estimated,
                    subject, body_text, thread_id, direction, metadata, created_at, updated_at)
            SELECT %s, 'gmail', 'bench-' || %s || '-' || n, 'email_inbound', now(), false,
                   'bench', '', '', 'inbound', '{{}}', now(), now()
              FROM generate_series(%s, %s) n
            RETURNING id
            """,
            [user_id, user_id, start, start + len(vectors) - 1],
        )
        ids = sorted(row[0] for row in cursor.fetchall())
        columns = (
            "user_id, interaction_id, model, dims, chunk, content_hash, text, vector, created_at"
        )
        raw = cursor.connection  # psycopg connection
        with (
            raw.cursor() as copy_cursor,
            copy_cursor.copy(f"COPY {Embedding._meta.db_table} ({columns}) FROM STDIN") as copy,
        ):
            buffer = io.StringIO()
            for n, (pk, vector) in enumerate(zip(ids, vectors, strict=True)):
                buffer.write(
                    f"{user_id}\t{pk}\t{MODEL}\t{DIMS}\t0\th{pk}\tbench\t"
                    f"{vector_text(vector)}\t2025-01-01 00:00:00+00\n"
                )
                if n % 5000 == 4999:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())


def run_query(
    sql: str, params: dict[str, Any], *, exact: bool, ef_search: int, max_scan: int
) -> tuple[list[int], float]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute(f"SET LOCAL hnsw.max_scan_tuples = {max_scan}")
        if exact:
            cursor.execute("SET LOCAL enable_indexscan = off")
        started = time.perf_counter()
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        elapsed = time.perf_counter() - started
    return [row[0] for row in rows], elapsed * 1000


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def search_bench(vectors: int, queries: int) -> dict[str, Any]:
    config = get_config()
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((CLUSTERS, DIMS)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    users = get_user_model().objects
    searched = users.create_user("bench-searched")
    other = users.create_user("bench-other")
    index = hnsw_index_name(model=MODEL, dims=DIMS)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {index}")
    started = time.perf_counter()
    load(searched.pk, clustered_unit_vectors(vectors, centres, rng))
    load(other.pk, clustered_unit_vectors(vectors // 10, centres, rng))
    say(f"loaded {vectors:,} + {vectors // 10:,} vectors in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute(hnsw_index_sql(model=MODEL, dims=DIMS))
        cursor.execute(f"ANALYZE {Embedding._meta.db_table}")
        cursor.execute(f"ANALYZE {Interaction._meta.db_table}")
    build_s = time.perf_counter() - started
    say(f"built the HNSW index in {build_s:.1f} s")

    sql, base = vector_candidates_sql(
        model=MODEL, dims=DIMS, filters=_Filters(user_id=searched.pk, contact_ids=None, since=None)
    )
    probes = clustered_unit_vectors(queries, centres, rng)
    plan_params = {**base, "query": vector_text(probes[0]), "candidates": config.vector_candidates}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL hnsw.ef_search = {config.hnsw_ef_search}")
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute("EXPLAIN " + sql, plan_params)
        plan = [row[0] for row in cursor.fetchall()]
    uses_hnsw = any(f"Index Scan using {index}" in line for line in plan)
    say("plan of the search query (HNSW side, the planner's choice; vectors elided):")
    for line in plan:
        if "Sort Key" in line or "Order By" in line or "Presorted Key" in line:
            line = line.split(":")[0] + ": (distance to the query)"
        say("    " + line)

    hnsw_ms: list[float] = []
    exact_ms: list[float] = []
    recall10: list[float] = []
    recall100: list[float] = []
    for n, probe in enumerate(probes):
        params = {**base, "query": vector_text(probe), "candidates": config.vector_candidates}
        options = {"ef_search": config.hnsw_ef_search, "max_scan": config.hnsw_max_scan_tuples}
        # warm both paths once, then time them
        run_query(sql, params, exact=False, **options)
        run_query(sql, params, exact=True, **options)
        approx, approx_ms = run_query(sql, params, exact=False, **options)
        truth, truth_ms = run_query(sql, params, exact=True, **options)
        hnsw_ms.append(approx_ms)
        exact_ms.append(truth_ms)
        recall10.append(len(set(approx[:10]) & set(truth[:10])) / 10)
        recall100.append(len(set(approx) & set(truth)) / max(1, len(truth)))
        if n % 50 == 49:
            say(
                f"  {n + 1} queries: hnsw p50 {statistics.median(hnsw_ms):.2f} ms, exact p50 "
                f"{statistics.median(exact_ms):.1f} ms, recall@10 {np.mean(recall10):.3f}"
            )
    return {
        "vectors": vectors,
        "other_user_vectors": vectors // 10,
        "dims": DIMS,
        "queries": queries,
        "candidates": config.vector_candidates,
        "ef_search": config.hnsw_ef_search,
        "hnsw_p50_ms": round(percentile(hnsw_ms, 50), 3),
        "hnsw_p95_ms": round(percentile(hnsw_ms, 95), 3),
        "exact_p50_ms": round(percentile(exact_ms, 50), 3),
        "exact_p95_ms": round(percentile(exact_ms, 95), 3),
        "speedup_p50": round(percentile(exact_ms, 50) / percentile(hnsw_ms, 50), 1),
        "speedup_p95": round(percentile(exact_ms, 95) / percentile(hnsw_ms, 95), 1),
        "recall_at_10": round(float(np.mean(recall10)), 4),
        "recall_at_100": round(float(np.mean(recall100)), 4),
        "index_build_s": round(build_s, 1),
        "plan_uses_hnsw": uses_hnsw,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip-encoder", action="store_true", help="part (b) only")
    args = parser.parse_args()

    encoder = None
    if not args.skip_encoder:
        try:
            from bench.embed_encoder import measure
        except ImportError:
            say("bench/embed_encoder.py is not here: part (a) skipped")
        else:
            say("(a) local encoder vs this machine's float32 GEMM rate")
            encoder = measure()

    say("(b) HNSW vs exact search")
    connection.settings_dict["TEST"]["NAME"] = f"bench_embed_{os.getpid()}"
    original_name = connection.settings_dict["NAME"]
    database = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    say(f"created and migrated throwaway database {database}")
    try:
        search = search_bench(args.vectors, args.queries)
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)
        say(f"dropped {database}")
    print(json.dumps({"encoder": encoder, "search": search}))


if __name__ == "__main__":
    main()
