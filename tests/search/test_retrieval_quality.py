"""Must show: retrieval quality on a labelled set of paraphrase queries over a generated mailbox
of ~3,000 e-mails (tests/search/corpus.py): the top-3 hit rate of hybrid search (target >= 0.8)
next to vector-only and full-text-only.

Two tests share one measurement (`measure`): the corpus goes through the real embed stage (a
job run by the engine: cleaning, chunking, documents, vectors) and the queries through
interaction_search.

- With each LOCAL model: all-MiniLM-L6-v2, the default (below the target: reported as an
  expected failure with its figures), and all-mpnet-base-v2 (`local_model`; the target is
  asserted). Each is skipped, saying why, when its weights are not on this machine
  (`manage.py embedding_model fetch [--model all-mpnet-base-v2]`; `./dev test` fetches both).
- With any OpenAI-compatible ``/v1/embeddings`` endpoint, through the `openai` provider: runs
  only when the environment names one, skipped otherwise (see ENDPOINT_ENV and
  docs/ARCHITECTURE.md, Search, "Retrieval quality, measured"):

      CRM_PIPELINE_EVAL_EMBEDDINGS_URL=http://127.0.0.1:8088/v1 \\
      CRM_PIPELINE_EVAL_EMBEDDINGS_MODEL=sentence-transformers/all-mpnet-base-v2 \\
      CRM_PIPELINE_EVAL_EMBEDDINGS_DIMS=768 \\
      pytest tests/search/test_retrieval_quality.py -k endpoint -s
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest

from jobs.enqueue import enqueue
from jobs.models import Interaction
from jobs.runner import run_job
from search.indexes import forget_checked_indexes
from search.selectors import interaction_search
from tests.search.corpus import QUERIES, generate, relevant
from tests.search.mail import in_batch

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

TOP = 3
HYBRID_TARGET = 0.8
# The figures measured with each local model (floors: a change may raise them, never lower
# them). Full text does not depend on the model.
MEASURED = {
    "all-MiniLM-L6-v2": {"hybrid": 0.725, "vector": 0.725, "text": 0.35},
    "all-mpnet-base-v2": {"hybrid": 0.825, "vector": 0.825, "text": 0.35},
}
TEXT_FLOOR = 0.35

# The endpoint test's settings: URL (the base, ending in /v1) and MODEL name it; DIMS (the
# model's vector size, sent as `dimensions`; unset: learnt from the first answer), KEY (a
# bearer key, sent only when set), MAX_TOKENS (the model's input window for chunking; unset:
# the provider's default) and TIMEOUT_S (per request; a slow CPU server needs minutes for a
# batch) are optional.
ENDPOINT_ENV = "CRM_PIPELINE_EVAL_EMBEDDINGS_"


@dataclass(frozen=True)
class Measured:
    rates: dict[str, float]  # mode -> top-3 hit rate over QUERIES
    queries: int
    mails: int


def measure(user, model: str) -> Measured:
    """Embeds the generated mailbox for `user` with the configured provider (the embed stage,
    run as a job), runs every labelled query in each mode, prints the figures (all, each half,
    the misses) and returns them."""
    mails = generate()
    rows = Interaction.objects.bulk_create(
        Interaction(
            user=user,
            source="gmail",
            source_id=m.key,
            kind="email_outbound" if m.outbound else "email_inbound",
            occurred_at=m.occurred_at,
            subject=m.subject,
            body_text=m.body,
            direction="outbound" if m.outbound else "inbound",
        )
        for m in mails
    )
    key_of = {row.pk: row.source_id for row in rows}
    job = enqueue("embed", user=user, batch_id=in_batch(rows), dedupe_key=f"embed:{uuid.uuid4()}")
    assert run_job(job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.metrics["itemsFetched"] == len(mails)

    hits = {"hybrid": 0, "vector": 0, "text": 0}
    misses: dict[str, list[str]] = {mode: [] for mode in hits}
    # per query and mode: found in the top 3 (for the figures of each half of the set, a check
    # that a change to the system does not help one half while hurting the other)
    found_at: dict[str, list[bool]] = {mode: [] for mode in hits}
    for query in QUERIES:
        wanted = relevant(query, mails)
        for mode in hits:
            found = interaction_search(user=user, query=query.text, limit=TOP, mode=mode)
            hit = bool({key_of[h.interaction_id] for h in found} & wanted)
            found_at[mode].append(hit)
            if hit:
                hits[mode] += 1
            else:
                misses[mode].append(query.text)
    rates = {mode: round(count / len(QUERIES), 3) for mode, count in hits.items()}
    print(
        f"\nretrieval quality ({model}), {len(QUERIES)} paraphrase queries over {len(mails)} "
        f"e-mails, top-{TOP} hit rate: hybrid {rates['hybrid']}, vector-only {rates['vector']}, "
        f"text-only {rates['text']} (hybrid target {HYBRID_TARGET}: "
        f"{'met' if rates['hybrid'] >= HYBRID_TARGET else 'not met'})"
    )
    half = len(QUERIES) // 2
    for name, part in (("first", slice(0, half)), ("last", slice(half, None))):
        figures = ", ".join(
            f"{mode} {sum(found_at[mode][part]) / len(found_at[mode][part]):.3f}" for mode in hits
        )
        print(f"  {name} {half} queries: {figures}")
    for mode, missed in misses.items():
        print(f"  {mode} missed: {missed}")
    return Measured(rates=rates, queries=len(QUERIES), mails=len(mails))


def assert_sane(measured: Measured) -> None:
    """What any model must show: a labelled set worth the name, and every mode finding
    something (the pipeline - cleaning, chunks, index, fusion - works end to end)."""
    assert measured.queries >= 30
    assert min(measured.rates.values()) > 0, measured.rates


@pytest.fixture(params=list(MEASURED))
def local_model(request, search_config, pipeline_config):
    search_config(provider="local", local_model=request.param)
    pipeline_config(handoff="none", job_wall_clock_cap_s=3600)
    from search.embedding import EmbeddingError, get_provider

    try:
        provider = get_provider()
        provider.embed(["warm up"])
    except (ImportError, EmbeddingError) as exc:
        pytest.skip(f"the local model ({request.param}) is not available here: {exc}")
    forget_checked_indexes()
    yield request.param, provider
    forget_checked_indexes()


def test_must_show_hybrid_top3_hit_rate_on_paraphrase_queries(user, local_model):
    key, provider = local_model
    measured = measure(user, provider.model)
    rates = measured.rates
    assert_sane(measured)
    # No regression below what was measured (the models, corpus and queries are deterministic).
    for mode, floor in MEASURED[key].items():
        assert rates[mode] >= floor, (mode, rates)
    if key == "all-MiniLM-L6-v2" and rates["hybrid"] < HYBRID_TARGET:
        # The default model, measured, not tuned: reported as an expected failure, so the
        # figure stays visible without the labelled set being bent to the model (see
        # docs/ARCHITECTURE.md, Search).
        pytest.xfail(
            f"hybrid top-{TOP} hit rate {rates['hybrid']} is below the target {HYBRID_TARGET}"
            f" with all-MiniLM-L6-v2 (vector-only {rates['vector']}, text-only {rates['text']})"
        )
    assert rates["hybrid"] >= HYBRID_TARGET, rates


@pytest.fixture
def endpoint_model(search_config, pipeline_config):
    """The `openai` provider against the endpoint the environment names (skip when none)."""
    url = os.environ.get(f"{ENDPOINT_ENV}URL", "").strip()
    model = os.environ.get(f"{ENDPOINT_ENV}MODEL", "").strip()
    if not url or not model:
        pytest.skip(
            f"no embeddings endpoint to evaluate: set {ENDPOINT_ENV}URL (an OpenAI-compatible "
            f"base URL, e.g. http://127.0.0.1:8088/v1) and {ENDPOINT_ENV}MODEL "
            f"(optional: _DIMS, _KEY, _MAX_TOKENS, _TIMEOUT_S)"
        )
    overrides: dict[str, object] = {
        "provider": "openai",
        "openai_base_url": url,
        "openai_model": model,
        # the key, when any, is read from this very variable (never stored in the settings)
        "openai_api_key_env": f"{ENDPOINT_ENV}KEY",
        "timeout_s": float(os.environ.get(f"{ENDPOINT_ENV}TIMEOUT_S") or 600),
    }
    for name, key in (("DIMS", "openai_dimensions"), ("MAX_TOKENS", "openai_max_tokens")):
        value = os.environ.get(f"{ENDPOINT_ENV}{name}", "").strip()
        if value:
            overrides[key] = int(value)
    search_config(**overrides)
    pipeline_config(handoff="none", job_wall_clock_cap_s=6 * 3600)
    from search.embedding import EmbeddingError, get_provider

    provider = get_provider()
    try:
        provider.embed(["warm up"])
    except EmbeddingError as exc:
        # Named but failing: a failure, not a skip (the run was asked for).
        pytest.fail(f"the embeddings endpoint {url} (model {model}) fails: {exc}")
    forget_checked_indexes()
    yield provider
    forget_checked_indexes()


def test_hybrid_top3_hit_rate_through_an_embeddings_endpoint(user, endpoint_model):
    """The same measurement with whatever model the endpoint serves: the figures are printed
    (run with -s), the sanity checks asserted; no floor nor target for hybrid and vector-only,
    which are the model's to show. Full text does not depend on the model, so its floor
    holds whatever the endpoint."""
    measured = measure(user, endpoint_model.model)
    assert_sane(measured)
    assert measured.rates["text"] >= TEXT_FLOOR, measured.rates
