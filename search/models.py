"""What search stores: per interaction a text document (full-text search, snippets) and its
embedding chunks (pgvector), and per user and model how far the embeddings are (a model switch).

Vectors of different models live in one column of the untyped `vector` type; each model has its
own HNSW index, a partial expression index over ``vector::vector(dims)`` restricted to that
model's rows (pgvector's documented approach for mixed dimensions; search/indexes.py), and every
query names one (model, dims) and casts the same way, so a query never mixes models.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from pgvector.django import VectorField

from jobs.models import Interaction

# The text-search configuration of documents and queries (see docs/ARCHITECTURE.md, "Search").
# Fixed in the generated column below: changing it is a migration, not a setting.
TEXT_SEARCH_CONFIG = "english"


class SearchDocument(models.Model):
    """An interaction's searchable text: its subject and its body without quoted replies,
    forwarded history or signature (search/text.py). One per interaction, written by the embed
    stage before any provider call, so full-text search covers new mail during a provider
    outage. `content_hash` tells the stage whether the text changed."""

    interaction = models.OneToOneField(
        Interaction, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    subject = models.TextField(blank=True)
    body = models.TextField(blank=True)
    content_hash = models.CharField(max_length=32)
    # The subject weighs more than the body in the text rank (weights A and B).
    search_vector = models.GeneratedField(
        expression=SearchVector("subject", weight="A", config=TEXT_SEARCH_CONFIG)
        + SearchVector("body", weight="B", config=TEXT_SEARCH_CONFIG),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # interaction_search's text half: tsvector @@ websearch_to_tsquery(...)
            GinIndex(fields=["search_vector"], name="search_document_tsv_idx"),
            models.Index(fields=["user"], name="search_document_user_idx"),
        ]

    def __str__(self) -> str:
        return f"document of interaction {self.interaction_id}"


class Embedding(models.Model):
    """One chunk of an interaction's document, embedded by one model.

    `model` and `dims` name the embedding space; (interaction, model, dims, chunk) is unique.
    `content_hash` is the chunk text's hash: a rerun whose chunk is unchanged calls no provider.
    """

    # indexed by embedding_user_space_idx (user first), not on its own
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    interaction = models.ForeignKey(Interaction, on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=200)
    dims = models.PositiveIntegerField()
    chunk = models.PositiveSmallIntegerField()
    content_hash = models.CharField(max_length=32)
    text = models.TextField()
    # Untyped `vector`: each model's rows are indexed and queried as vector(dims).
    vector = VectorField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["interaction", "model", "dims", "chunk"], name="embedding_chunk_uniq"
            )
        ]
        indexes = [
            # per-user reads of one space: completeness, exact scans, removal after a switch
            models.Index(fields=["user", "model", "dims"], name="embedding_user_space_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.model} chunk {self.chunk} of interaction {self.interaction_id}"


class EmbeddingSet(models.Model):
    """How far one user's embeddings by one model (and size) are.

    Created `building` when the embed stage first writes vectors of a model for the user;
    `complete` once a pass over all the user's documents (the embed stage's `all` scope) found
    every one embedded. Search uses the configured model's vectors once its set is complete,
    until then the most recently completed set (the previous model), whose provider settings
    are kept here to embed queries the same way. When a set completes, the user's vectors and
    sets of every other model are removed.
    """

    class Status(models.TextChoices):
        BUILDING = "building", "building"
        COMPLETE = "complete", "complete"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=200)
    dims = models.PositiveIntegerField()
    # The provider settings that produced these vectors (no secrets: the key's variable name
    # only), so a query can be embedded by the same model after the configuration moved on.
    provider_settings = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.BUILDING)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "model", "dims"], name="embedding_set_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.model} ({self.dims}) for user {self.user_id}: {self.status}"


class InteractionSearch(SearchDocument):
    """No table: the admin's search page ("Interaction search") hangs on this proxy, so it is
    listed in the admin index like a model (search/admin.py)."""

    class Meta:
        proxy = True
        verbose_name = "interaction search"
        verbose_name_plural = "interaction search"
