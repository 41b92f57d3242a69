"""Search and embedding settings: ``settings.CRM_PIPELINE_SEARCH`` (a dict, from the JSON
environment variable of that name) over the defaults of `SearchConfig`. A bad value is refused at
start-up by the system check search.E001 (search/checks.py), one line per problem.

Each key is a field of `SearchConfig` with its default and, in its metadata, what a valid value
is: ``{"min": a, "max": b}`` (inclusive bounds of a number), ``{"choices": (...)}`` or
``{"pattern": regex}`` (a string must match in full). The type comes from the annotation: int,
float, bool, str and ``X | None`` (JSON null allowed). Adding a key is adding a field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.config import AppSettings

SETTING = "CRM_PIPELINE_SEARCH"


@dataclass(frozen=True, slots=True)
class SearchConfig:
    # --- embedding providers ---------------------------------------------------------------
    # "local": a sentence-transformers model on numpy, offline (search/embedding/local.py);
    # "openai": any OpenAI-compatible /v1/embeddings endpoint (search/embedding/openai.py).
    provider: str = field(default="local", metadata={"choices": ("local", "openai")})
    # The local provider's model: all-MiniLM-L6-v2 (384 dims), or all-mpnet-base-v2 (768 dims,
    # better at paraphrases, about eight times the arithmetic per token; its weights come with
    # `manage.py embedding_model fetch --model all-mpnet-base-v2`). Changing it re-embeds in
    # the background, like any change of model.
    local_model: str = field(
        default="all-MiniLM-L6-v2", metadata={"choices": ("all-MiniLM-L6-v2", "all-mpnet-base-v2")}
    )
    # A directory holding the local model's files (config.json, tokenizer.json,
    # model.safetensors); null: the Hugging Face cache, else `manage.py embedding_model fetch`.
    model_dir: str | None = field(default=None, metadata={"pattern": r".*\S.*"})
    openai_base_url: str = field(
        default="https://api.openai.com/v1", metadata={"pattern": r"https?://\S+"}
    )
    openai_model: str = field(default="text-embedding-3-small", metadata={"pattern": r"\S+"})
    # Sent as `dimensions` when set (text-embedding-3-* can shorten their vectors); every
    # response must have exactly this many (or the model's own size when null).
    openai_dimensions: int | None = field(default=None, metadata={"min": 1, "max": 65_536})
    # The longest input the remote model reads, in its tokens (8191 for OpenAI's models).
    openai_max_tokens: int = field(default=8191, metadata={"min": 16, "max": 1_000_000})
    # The name of the environment variable holding the bearer key (never the key itself, so
    # the key stays out of settings dumps); an unset or empty variable sends no key (Ollama).
    openai_api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"pattern": r"[A-Za-z_][A-Za-z0-9_]*"}
    )
    # Texts per provider call (one HTTP request, or one batch of the local encoder).
    batch_size: int = field(default=64, metadata={"min": 1, "max": 2048})
    # HTTP: seconds per request; retries after the first attempt on 429, 5xx, timeouts and
    # connection errors, with full-jitter exponential backoff that never waits less than
    # Retry-After (and gives up at once when Retry-After exceeds backoff_cap_s).
    timeout_s: float = field(default=30.0, metadata={"min": 0.1, "max": 600})
    max_retries: int = field(default=3, metadata={"min": 0, "max": 20})
    backoff_base_s: float = field(default=1.0, metadata={"min": 0, "max": 600})
    backoff_cap_s: float = field(default=30.0, metadata={"min": 0, "max": 3600})

    # --- search and embed stage ------------------------------------------------------------
    # Interactions per chunk of the embed stage: one fenced write of their documents, the
    # provider calls for their new or changed chunks, one fenced write of the vectors.
    embed_chunk_size: int = field(default=200, metadata={"min": 1, "max": 5000})
    # Tokens a chunk of a long text repeats from the end of the one before it.
    chunk_overlap_tokens: int = field(default=32, metadata={"min": 0, "max": 1024})
    # Chunks embedded per interaction at most (the rest of a very long body is found by
    # full-text search only).
    max_chunks_per_interaction: int = field(default=16, metadata={"min": 1, "max": 1000})
    # Languages whose reply headers and sign-offs are removed from bodies (mail-parser-reply's
    # codes, comma-separated).
    reply_languages: str = field(
        default="en,de,es,fr,it,nl,pl,sv,da,cs,ja,ko,zh",
        metadata={
            "pattern": r"(en|de|es|fr|it|nl|pl|sv|da|cs|ja|ko|zh)"
            r"(,(en|de|es|fr|it|nl|pl|sv|da|cs|ja|ko|zh))*"
        },
    )
    # Reciprocal rank fusion: an interaction scores the sum of 1 / (rrf_k + its rank) over the
    # vector and the text ranking.
    rrf_k: int = field(default=60, metadata={"min": 1, "max": 10_000})
    # Chunks read from the vector index and documents from the text index per query, before
    # fusion.
    vector_candidates: int = field(default=100, metadata={"min": 10, "max": 10_000})
    text_candidates: int = field(default=100, metadata={"min": 10, "max": 10_000})
    # HNSW search (pgvector): the candidate list, and how many tuples an iterative scan may
    # visit to fill the result when the user's rows or the filters are a small part of the index.
    hnsw_ef_search: int = field(default=100, metadata={"min": 1, "max": 1000})
    # A user with at most this many vectors of the model is searched exactly (a scan of the
    # user's rows through their btree index: milliseconds, recall 1); above it, the HNSW index.
    # Measured: on 3,039 generated e-mails full of near-duplicate template mail, the HNSW path
    # found the target in the top 3 for 0.55 of the labelled queries against 0.725 exactly.
    exact_search_max_vectors: int = field(default=20_000, metadata={"min": 0, "max": 10_000_000})
    hnsw_max_scan_tuples: int = field(default=20_000, metadata={"min": 100, "max": 10_000_000})


# --- validation ---------------------------------------------------------------------------------


def _build(values: dict[str, Any], problems: list[str]) -> SearchConfig:
    config = SearchConfig(**values)
    if config.backoff_cap_s < config.backoff_base_s:
        problems.append(
            f"{SETTING}['backoff_cap_s']: got {config.backoff_cap_s:g}; expected a "
            f"number >= backoff_base_s ({config.backoff_base_s:g})"
        )
    return config


SETTINGS = AppSettings(
    SETTING, SearchConfig, example='{"provider": "openai"}', check_id="search.E001", build=_build
)
config_problems = SETTINGS.problems
build_config = SETTINGS.build
get_config = SETTINGS.get
