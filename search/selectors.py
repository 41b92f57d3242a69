"""Reads of the search app: hybrid interaction search, and which embeddings a user's search uses.

`interaction_search` fuses two rankings of the user's interactions by reciprocal rank (RRF,
Cormack et al. 2009): score = sum over the rankings an interaction is in of 1 / (k + rank),
k = `rrf_k` (60 by default, the paper's):

- vector: the query embedded by the model of the user's searchable embedding set, the nearest
  chunks by cosine distance from that model's HNSW index (iterative scan, so the user and the
  filters do not starve the result), best chunk per interaction;
- text: Postgres full-text search against the documents' ``tsvector`` (subject weighted above
  body), ranked by ``ts_rank_cd``. The query is read by ``websearch_to_tsquery`` (the syntax
  people type: quotes, ``or``, ``-word``), which requires every term. That is the text half of a
  hybrid search: a precise signal next to the vectors (a document with all the words). When the
  text ranking stands alone (text-only mode, or a hybrid search whose query could not be
  embedded) a plain query (no quotes, ``or`` or ``-word``) matches ANY of its terms instead,
  ranked by the sum of its terms' IDF times their ``ts_rank`` (`text_match`, `_text_ranking`):
  a query in other words than the mail's rarely has all its words in one document. Fused
  with the vectors by RRF, the any-term ranking's many partial matches outvote the vector
  ranking (see docs/ARCHITECTURE.md, Search: measured), so hybrid keeps the all-terms half.

One result per interaction, never an interaction of another user, never a copy linked as a
duplicate (contacts.InteractionDuplicate). Each result has its vector score (cosine
similarity), text rank, fused score and a snippet: the text's best fragments with the matching
words between « and » where the text matched, else the start of the best chunk.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Literal

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, models, transaction
from django.utils import timezone
from pgvector import Vector

from contacts.identity import matching_key
from contacts.models import Contact, ContactIdentity, InteractionDuplicate, InteractionParticipant
from jobs.models import Interaction
from search.conf import SearchConfig, get_config
from search.embedding import EmbeddingError, EmbeddingProvider, get_provider, provider_for
from search.embedding.local import local_model_named
from search.indexes import space_predicate
from search.models import TEXT_SEARCH_CONFIG, Embedding, EmbeddingSet, SearchDocument

logger = logging.getLogger(__name__)

Mode = Literal["hybrid", "vector", "text"]
MODES: tuple[str, ...] = ("hybrid", "vector", "text")
MAX_LIMIT = 100
SNIPPET_CHARS = 240
HIGHLIGHT_START, HIGHLIGHT_STOP = "«", "»"

# The provider settings that decide which vectors a model makes (kept on each EmbeddingSet, so
# a query can be embedded by a set's model after the configuration moved on). No secret: the
# key is named by its environment variable.
PROVIDER_KEYS: tuple[str, ...] = (
    "provider",
    "local_model",
    "model_dir",
    "openai_base_url",
    "openai_model",
    "openai_dimensions",
    "openai_max_tokens",
    "openai_api_key_env",
)

_EMB = Embedding._meta.db_table
_DOC = SearchDocument._meta.db_table
_INTERACTION = Interaction._meta.db_table
_PARTICIPANT = InteractionParticipant._meta.db_table
_DUPLICATE = InteractionDuplicate._meta.db_table


class SearchError(Exception):
    """A search that cannot run as asked (no embeddings yet for a vector-only search, the
    provider down for one); the message says why."""


class ContactNotFound(LookupError):
    pass


def provider_settings(config: SearchConfig | None = None) -> dict[str, Any]:
    """The provider keys of a configuration (the current one by default)."""
    config = config or get_config()
    return {key: getattr(config, key) for key in PROVIDER_KEYS}


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """The embeddings a user's search reads: one model and size, and how to embed a query."""

    model: str
    dims: int
    complete: bool
    # False: the configured model's set is still being built and an older one is used.
    configured: bool
    provider: Callable[[], EmbeddingProvider] = field(compare=False, repr=False)


@functools.lru_cache(maxsize=2)
def _provider_of(config: SearchConfig) -> EmbeddingProvider:
    """A provider of an older set's settings, kept between queries (the local model's weights
    load once) while a switch is in progress."""
    return provider_for(config)


def search_space(*, user_id: int) -> SearchSpace:
    """The configured model's embeddings once the user's set of them is complete; until then
    the most recently completed set (a model switch in progress), embedded by that set's own
    provider settings; the configured model's (partial) when the user has no complete set.

    A configured model that cannot be built (its weights not fetched yet) does not hide a
    complete set of another model: that set is searched; with none, the error stands."""
    sets = {
        (s.model, s.dims): s
        for s in EmbeddingSet.objects.filter(user_id=user_id).order_by("completed_at")
    }
    try:
        configured = get_provider()
    except EmbeddingError:
        if not any(s.status == EmbeddingSet.Status.COMPLETE for s in sets.values()):
            raise
        configured = None
    current = None if configured is None else sets.get((configured.model, configured.dims))
    if configured is not None and current is not None and current.status == "complete":
        return SearchSpace(configured.model, configured.dims, True, True, lambda: configured)
    complete = [s for s in sets.values() if s.status == EmbeddingSet.Status.COMPLETE]
    if complete:
        older = complete[-1]
        snapshot = {k: v for k, v in older.provider_settings.items() if k in PROVIDER_KEYS}
        if snapshot.get("provider", "local") == "local":
            # The set's own model, whatever the settings say (a set stored before local_model
            # existed has none, and must not take the configured one).
            spec = local_model_named(older.model)
            if spec is not None:
                snapshot["local_model"] = spec.key

        def older_provider() -> EmbeddingProvider:
            return _provider_of(dataclasses.replace(get_config(), **snapshot))

        return SearchSpace(older.model, older.dims, True, False, older_provider)
    assert configured is not None  # without a complete set, its error was raised above
    return SearchSpace(configured.model, configured.dims, False, True, lambda: configured)


def contact_find(*, user: AbstractBaseUser | int, identifier: str) -> Contact:
    """The user's contact by id or by any e-mail address it has (matched by key: case, IDN,
    gmail dots and +tags); a merged contact leads to the contact it was merged into."""
    user_id = user if isinstance(user, int) else user.pk
    text = identifier.strip()
    contact: Contact | None = None
    if text.isdigit():
        contact = Contact.objects.filter(user_id=user_id, pk=int(text)).first()
    elif (key := matching_key(text)) is not None:
        identity = (
            ContactIdentity.objects.filter(user_id=user_id, key=key)
            .select_related("contact")
            .first()
        )
        contact = identity.contact if identity is not None else None
    else:
        raise ContactNotFound(f"'{identifier}' is neither a contact id nor an e-mail address")
    if contact is None:
        raise ContactNotFound(f"no contact '{identifier}' for this user")
    seen = {contact.pk}
    while contact.merged_into_id is not None and contact.merged_into_id not in seen:
        seen.add(contact.merged_into_id)
        contact = Contact.objects.get(user_id=user_id, pk=contact.merged_into_id)
    return contact


@dataclass(slots=True)
class SearchHit:
    interaction_id: int
    subject: str
    occurred_at: datetime
    kind: str
    direction: str
    thread_id: str
    # cosine similarity of the best chunk (None: not among the vector candidates)
    vector_score: float | None
    vector_rank: int | None
    # the text ranking's score: ts_rank_cd, or the IDF-weighted ts_rank of an any-term
    # match (None: the text did not match)
    text_score: float | None
    text_rank: int | None
    fused_score: float
    snippet: str
    chunk: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "interactionId": self.interaction_id,
            "subject": self.subject,
            "occurredAt": self.occurred_at.isoformat(),
            "kind": self.kind,
            "direction": self.direction,
            "threadId": self.thread_id,
            "vectorScore": self.vector_score,
            "vectorRank": self.vector_rank,
            "textScore": self.text_score,
            "textRank": self.text_rank,
            "fusedScore": self.fused_score,
            "snippet": self.snippet,
            "chunk": self.chunk,
        }


class SearchResults(list[SearchHit]):
    """The hits, best first, and how they were found: `mode`, the embedding `model` and `dims`
    (None for text only) and `notes` (a provider outage that left a hybrid search with text
    only; a model switch in progress)."""

    def __init__(
        self,
        hits: list[SearchHit],
        *,
        mode: str,
        model: str | None,
        dims: int | None,
        notes: list[str],
    ) -> None:
        super().__init__(hits)
        self.mode = mode
        self.model = model
        self.dims = dims
        self.notes = notes


@dataclass(frozen=True, slots=True)
class _Filters:
    user_id: int
    contact_ids: tuple[int, ...] | None
    since: datetime | None

    def sql(self, column: str) -> tuple[str, dict[str, Any]]:
        """Conditions on the interaction id in `column`: not a duplicate, the contact took part,
        on or after `since`."""
        parts = [f"NOT EXISTS (SELECT 1 FROM {_DUPLICATE} dup WHERE dup.interaction_id = {column})"]
        params: dict[str, Any] = {"user_id": self.user_id}
        if self.contact_ids is not None:
            parts.append(
                f"{column} IN (SELECT p.interaction_id FROM {_PARTICIPANT} p"
                f" WHERE p.user_id = %(user_id)s AND p.contact_id = ANY(%(contact_ids)s))"
            )
            params["contact_ids"] = list(self.contact_ids)
        if self.since is not None:
            parts.append(
                f"EXISTS (SELECT 1 FROM {_INTERACTION} fi WHERE fi.id = {column}"
                f" AND fi.user_id = %(user_id)s AND fi.occurred_at >= %(since)s)"
            )
            params["since"] = self.since
        return " AND ".join(parts), params


def _vector_sql(*, dims: int, model: str, filters: str, exact: bool = False) -> str:
    # The ORDER BY is the index's expression (vector::vector(dims) <=> query), and the WHERE
    # names the index's space as literals, so the planner can use the model's partial HNSW
    # index. iterative_scan = relaxed_order may return rows slightly out of order: the outer
    # query sorts them again (pgvector's documented pattern). `exact`: the ORDER BY is not the
    # index's expression (+ 0), so the planner cannot take the HNSW index: an exact search.
    n = int(dims)
    order = f"((e.vector::vector({n})) <=> %(query)s::vector({n}))" + (" + 0" if exact else "")
    return f"""
    SELECT interaction_id, chunk, distance FROM (
        SELECT e.interaction_id, e.chunk,
               (e.vector::vector({n})) <=> %(query)s::vector({n}) AS distance
          FROM {_EMB} e
         WHERE e.user_id = %(user_id)s AND {space_predicate(model=model, dims=dims, alias="e")}
           AND {filters}
         ORDER BY {order}
         LIMIT %(candidates)s
    ) nearest
    ORDER BY distance, interaction_id, chunk
    """


def vector_candidates_sql(
    *, model: str, dims: int, filters: _Filters, exact: bool = False
) -> tuple[str, dict]:
    """The vector half's SQL and parameters but the query vector and candidate count (for
    EXPLAIN in tests and docs); `exact` never uses the HNSW index."""
    where, params = filters.sql("e.interaction_id")
    return _vector_sql(dims=dims, model=model, filters=where, exact=exact), params


def vector_search_is_exact(*, user_id: int, model: str, dims: int, limit: int) -> bool:
    """Whether the user has at most `limit` vectors of the model (a bounded count through the
    (user, model, dims) index): then the vector half searches exactly, not through HNSW."""
    sql = (
        f"SELECT count(*) FROM (SELECT 1 FROM {_EMB} e WHERE e.user_id = %(user_id)s AND "
        f"{space_predicate(model=model, dims=dims, alias='e')} LIMIT %(cap)s) mine"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, {"user_id": user_id, "cap": limit + 1})
        return int(cursor.fetchone()[0]) <= limit


def _vector_ranking(
    *,
    space: SearchSpace,
    query_vector: Any,
    filters: _Filters,
    config: SearchConfig,
) -> list[tuple[int, int, float]]:
    """(interaction id, best chunk, cosine similarity), nearest first, one per interaction."""
    exact = vector_search_is_exact(
        user_id=filters.user_id,
        model=space.model,
        dims=space.dims,
        limit=config.exact_search_max_vectors,
    )
    sql, params = vector_candidates_sql(
        model=space.model, dims=space.dims, filters=filters, exact=exact
    )
    params.update(query=Vector._to_db(query_vector), candidates=config.vector_candidates)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL hnsw.ef_search = {int(config.hnsw_ef_search)}")
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute(f"SET LOCAL hnsw.max_scan_tuples = {int(config.hnsw_max_scan_tuples)}")
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    best: dict[int, tuple[int, int, float]] = {}
    for interaction_id, chunk, distance in rows:
        if interaction_id not in best:
            best[interaction_id] = (interaction_id, chunk, 1.0 - float(distance))
    return list(best.values())


TextMatch = Literal["all", "any"]

# websearch_to_tsquery's operators as people type them: a quote, the word "or", a word led by "-"
_OPERATOR = re.compile(r'"|(?:^|\s)(?:or(?=\s|$)|-\S)', re.IGNORECASE)


def text_match(*, query: str, alone: bool) -> TextMatch:
    """How the text ranking reads `query`: "any" of its terms when the text ranking stands alone
    and the query is plain words, else "all" (websearch_to_tsquery as typed)."""
    return "any" if alone and not _OPERATOR.search(query) else "all"


def tsquery_sql(match: TextMatch) -> str:
    """An SQL expression, the tsquery of %(query)s: websearch_to_tsquery's, for "any" with its
    ANDs turned into ORs (a hyphenated word's phrase stays a phrase; a query that came out with
    an OR or a NOT, whatever its spelling, is kept as it is)."""
    websearch = f"websearch_to_tsquery('{TEXT_SEARCH_CONFIG}', %(query)s)"
    if match == "all":
        return websearch
    return (
        "(SELECT CASE WHEN w::text ~ '[|!]' THEN w"
        f" ELSE replace(w::text, ' & ', ' | ')::tsquery END FROM {websearch} w)"
    )


def _text_ranking(
    *, query: str, match: TextMatch, filters: _Filters, config: SearchConfig
) -> list[tuple[int, float]]:
    """(interaction id, rank), best first: ``ts_rank_cd`` for "all"; for "any" the sum over the
    query's terms of the term's IDF among the user's documents times its ``ts_rank``
    (normalised by document length), so a rare word of the query counts more than a common
    one (BM25's idea: ``ts_rank`` alone weighs every term alike)."""
    where, params = filters.sql("d.interaction_id")
    params.update(query=query, candidates=config.text_candidates)
    if match == "all":
        terms, rank = "", "ts_rank_cd(d.search_vector, tsq.q)"
    else:
        terms = f"""
    WITH term AS (
        SELECT quote_literal(t.lexeme)::tsquery AS q
          FROM unnest(to_tsvector('{TEXT_SEARCH_CONFIG}', %(query)s)) t
    ), weighted AS (
        SELECT term.q, ln(1 + (n.total - f.df + 0.5) / (f.df + 0.5)) AS idf
          FROM term,
               (SELECT count(*) AS total FROM {_DOC} WHERE user_id = %(user_id)s) n,
               LATERAL (SELECT count(*) AS df FROM {_DOC} x
                         WHERE x.user_id = %(user_id)s AND x.search_vector @@ term.q) f
    )"""
        rank = "(SELECT sum(w.idf * ts_rank(d.search_vector, w.q, 1)) FROM weighted w)"
    sql = f"""{terms}
    SELECT d.interaction_id, {rank} AS rank
      FROM {_DOC} d, (SELECT {tsquery_sql(match)} AS q) tsq
     WHERE d.user_id = %(user_id)s AND d.search_vector @@ tsq.q AND {where}
     ORDER BY rank DESC NULLS LAST, d.interaction_id DESC
     LIMIT %(candidates)s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(pk, float(rank or 0.0)) for pk, rank in cursor.fetchall()]


def _as_datetime(since: date | datetime | None) -> datetime | None:
    if since is None:
        return None
    if not isinstance(since, datetime):
        since = datetime.combine(since, time.min)
    if timezone.is_naive(since):
        since = timezone.make_aware(since, timezone.get_default_timezone())
    return since


def interaction_search(
    *,
    user: AbstractBaseUser | int,
    query: str,
    limit: int = 10,
    contact: Contact | int | None = None,
    since: date | datetime | None = None,
    mode: Mode = "hybrid",
) -> SearchResults:
    """The user's interactions that best match `query`, best first (see the module doc).

    `contact`: only interactions the contact (a Contact of the user, or its id) took part in,
    with the contacts merged into it. `since`: only interactions on or after it (a date means
    its midnight in the default time zone). `mode`: "hybrid" (both rankings fused), "vector" or
    "text" (one ranking; the evaluation compares the three). A hybrid search whose query cannot
    be embedded (provider outage) answers from the text ranking alone and says so in `notes`;
    a vector-only one raises SearchError.
    """
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}; one of: {', '.join(MODES)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    user_id = user if isinstance(user, int) else user.pk
    config = get_config()
    text = (query or "").strip()
    notes: list[str] = []
    if not text:
        return SearchResults([], mode=mode, model=None, dims=None, notes=["empty query"])
    contact_ids: tuple[int, ...] | None = None
    if contact is not None:
        contact_id = contact if isinstance(contact, int) else contact.pk
        contact_ids = tuple(
            Contact.objects.filter(user_id=user_id, pk=contact_id).values_list("pk", flat=True)
        ) + tuple(
            Contact.objects.filter(user_id=user_id, merged_into_id=contact_id).values_list(
                "pk", flat=True
            )
        )
    filters = _Filters(user_id=user_id, contact_ids=contact_ids, since=_as_datetime(since))

    vector: list[tuple[int, int, float]] = []
    space: SearchSpace | None = None
    if mode in ("hybrid", "vector"):
        try:
            # the configured provider may be unusable too (the local model's weights missing)
            space = search_space(user_id=user_id)
            query_vector = space.provider().embed([text])[0]
        except EmbeddingError as exc:
            if mode == "vector":
                raise SearchError(f"the query could not be embedded: {exc}") from exc
            logger.warning("search without vectors: the query could not be embedded: %s", exc)
            notes.append(f"text search only: the query could not be embedded ({exc})")
            space = None
        else:
            if not space.configured:
                notes.append(
                    "the configured model's embeddings are still being built;"
                    f" searching {space.model}"
                )
            elif not space.complete:
                notes.append(f"embeddings of {space.model} are still being built")
            vector = _vector_ranking(
                space=space, query_vector=query_vector, filters=filters, config=config
            )
    textual: list[tuple[int, float]] = []
    match: TextMatch = "all"
    if mode in ("hybrid", "text"):
        match = text_match(query=text, alone=space is None)
        textual = _text_ranking(query=text, match=match, filters=filters, config=config)

    scores: dict[int, float] = {}
    for rank, (pk, _, _) in enumerate(vector, start=1):
        scores[pk] = scores.get(pk, 0.0) + 1.0 / (config.rrf_k + rank)
    for rank, (pk, _) in enumerate(textual, start=1):
        scores[pk] = scores.get(pk, 0.0) + 1.0 / (config.rrf_k + rank)
    vector_of = {pk: (rank, chunk, sim) for rank, (pk, chunk, sim) in enumerate(vector, start=1)}
    text_of = {pk: (rank, score) for rank, (pk, score) in enumerate(textual, start=1)}
    ordered = sorted(
        scores,
        key=lambda pk: (
            -scores[pk],
            vector_of[pk][0] if pk in vector_of else MAX_LIMIT * 1000,
            -pk,
        ),
    )[:limit]
    details = _details(
        user_id=user_id,
        ids=ordered,
        query=text,
        match=match,
        text_hits={pk for pk in ordered if pk in text_of},
        chunks={pk: vector_of[pk][1] for pk in ordered if pk in vector_of},
        space=space,
    )
    hits = []
    for pk in ordered:
        if pk not in details:
            continue
        row = details[pk]
        v = vector_of.get(pk)
        t = text_of.get(pk)
        hits.append(
            SearchHit(
                interaction_id=pk,
                subject=row["subject"],
                occurred_at=row["occurred_at"],
                kind=row["kind"],
                direction=row["direction"],
                thread_id=row["thread_id"],
                vector_score=round(v[2], 6) if v else None,
                vector_rank=v[0] if v else None,
                text_score=round(t[1], 6) if t else None,
                text_rank=t[0] if t else None,
                fused_score=round(scores[pk], 6),
                snippet=row["snippet"],
                chunk=v[1] if v else None,
            )
        )
    return SearchResults(
        hits,
        mode=mode,
        model=space.model if space else None,
        dims=space.dims if space else None,
        notes=notes,
    )


def _details(
    *,
    user_id: int,
    ids: list[int],
    query: str,
    match: TextMatch,
    text_hits: set[int],
    chunks: dict[int, int],
    space: SearchSpace | None,
) -> dict[int, dict[str, Any]]:
    """The interactions' fields and snippets, by id (only the user's)."""
    if not ids:
        return {}
    options = (
        f"StartSel={HIGHLIGHT_START}, StopSel={HIGHLIGHT_STOP}, MaxFragments=2, "
        "MinWords=8, MaxWords=24, FragmentDelimiter=' … '"
    )
    space_join = (
        f"LEFT JOIN {_EMB} e ON e.interaction_id = i.id AND e.chunk = x.chunk"
        f" AND e.user_id = %(user_id)s"
        f" AND {space_predicate(model=space.model, dims=space.dims, alias='e')}"
        if space is not None
        else "LEFT JOIN LATERAL (SELECT NULL::text AS text) e ON true"
    )
    sql = f"""
    SELECT i.id, i.subject, i.occurred_at, i.kind, i.direction, i.thread_id,
           CASE WHEN x.text_hit THEN
                ts_headline('{TEXT_SEARCH_CONFIG}', concat_ws(E'\\n', d.subject, d.body),
                            {tsquery_sql(match)},
                            %(options)s)
           END,
           e.text, d.body
      FROM unnest(%(ids)s::int8[], %(chunks)s::int4[], %(text_hits)s::bool[])
               AS x(id, chunk, text_hit)
      JOIN {_INTERACTION} i ON i.id = x.id AND i.user_id = %(user_id)s
      LEFT JOIN {_DOC} d ON d.interaction_id = i.id
      {space_join}
    """
    params: dict[str, Any] = {
        "user_id": user_id,
        "query": query,
        "options": options,
        "ids": ids,
        "chunks": [chunks.get(pk, 0) for pk in ids],
        "text_hits": [pk in text_hits for pk in ids],
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out: dict[int, dict[str, Any]] = {}
    for pk, subject, occurred_at, kind, direction, thread_id, headline, chunk_text, body in rows:
        if headline:
            snippet = " ".join(headline.split())
        else:
            source = chunk_text or body or ""
            if subject and source.startswith(subject):
                source = source[len(subject) :]
            snippet = textwrap.shorten(" ".join(source.split()), SNIPPET_CHARS, placeholder=" …")
        out[pk] = {
            "subject": subject,
            "occurred_at": occurred_at,
            "kind": kind,
            "direction": direction,
            "thread_id": thread_id,
            "snippet": snippet,
        }
    return out


def embedding_status(*, user_id: int) -> dict[str, Any]:
    """The user's documents, and per model its set's status and vector rows (for the
    `embeddings` command): what search uses, and how far a switch is."""
    configured = get_provider()
    space = search_space(user_id=user_id)
    rows = {
        (model, dims): count
        for model, dims, count in Embedding.objects.filter(user_id=user_id)
        .values_list("model", "dims")
        .annotate(n=models.Count("id"))
        .values_list("model", "dims", "n")
    }
    sets = []
    for s in EmbeddingSet.objects.filter(user_id=user_id).order_by("created_at"):
        sets.append(
            {
                "model": s.model,
                "dims": s.dims,
                "status": s.status,
                "completedAt": s.completed_at.isoformat() if s.completed_at else None,
                "vectors": rows.get((s.model, s.dims), 0),
            }
        )
    return {
        "documents": SearchDocument.objects.filter(user_id=user_id).count(),
        "configured": {"model": configured.model, "dims": configured.dims},
        "searching": {"model": space.model, "dims": space.dims, "complete": space.complete},
        "sets": sets,
    }


_MISSING_SQL = f"""
SELECT count(*)
  FROM {_INTERACTION} i
       LEFT JOIN {_DOC} d ON d.interaction_id = i.id
 WHERE i.user_id = %(user_id)s AND (%(until_id)s::int8 IS NULL OR i.id <= %(until_id)s)
   AND (d.interaction_id IS NULL
        OR ((d.subject <> '' OR d.body <> '')
            AND NOT EXISTS (SELECT 1 FROM {_EMB} e
                             WHERE e.interaction_id = i.id AND e.chunk = 0 AND {{space}})))
"""


def embedding_set_missing(
    *, user_id: int, model: str, dims: int, until_id: int | None = None
) -> int:
    """How many of the user's interactions (up to `until_id`, else all) have no document yet,
    or a document with text and no vector of this model: 0 means the set is complete."""
    sql = _MISSING_SQL.replace("{space}", space_predicate(model=model, dims=dims, alias="e"))
    with connection.cursor() as cursor:
        cursor.execute(sql, {"user_id": user_id, "until_id": until_id})
        return int(cursor.fetchone()[0])
