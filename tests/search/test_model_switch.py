"""A change of the configured model re-embeds every interaction in the background while search
keeps reading the previous model's vectors; once the new set is complete, search switches and the
old vectors go."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from jobs.config import get_config
from jobs.context import JobContext
from jobs.enqueue import enqueue
from jobs.models import Job
from jobs.runner import claim, run_job
from search.models import Embedding, EmbeddingSet
from search.processors import embed
from search.selectors import interaction_search, search_space
from search.services import embeddings_rebuild_enqueue
from tests.search.mail import in_batch, mail

pytestmark = pytest.mark.django_db

OLD, NEW = ("nomic-embed-text", 64), ("text-embedding-3-small", 32)


def run_batch(user, interactions) -> Job:
    job = enqueue(
        "embed", user=user, batch_id=in_batch(interactions), dedupe_key=f"e:{uuid.uuid4()}"
    )
    assert run_job(job.pk) == "succeeded"
    return job


def embedding_requests(server) -> list[str]:
    return [r.body["model"] for r in server.requests if r.path.endswith("embeddings")]


def test_search_keeps_the_old_models_vectors_until_the_new_ones_are_complete(
    user, stand_in, search_config
):
    search_config(openai_model=OLD[0], openai_dimensions=OLD[1], embed_chunk_size=2)
    first = [mail(user, f"Invoice {n}", f"Payment {n} is still outstanding") for n in range(5)]
    run_batch(user, first)
    # a new user's first batch holds all their mail: the set is complete at once
    old_set = EmbeddingSet.objects.get(user=user)
    assert (old_set.model, old_set.dims, old_set.status) == (*OLD, "complete")
    assert interaction_search(user=user, query="outstanding payment").model == OLD[0]

    # the configuration moves to another model
    search_config(openai_model=NEW[0], openai_dimensions=NEW[1])
    latest = mail(user, "Customs hold", "The container is held at the port")
    run_batch(user, [latest])
    assert Embedding.objects.filter(interaction=latest, model=NEW[0]).exists()
    new_set = EmbeddingSet.objects.get(user=user, model=NEW[0])
    assert new_set.status == "building"

    # search still reads the old model's vectors, and embeds the query with the old model
    stand_in.requests.clear()
    results = interaction_search(user=user, query="outstanding payment", limit=3)
    assert (results.model, results.dims) == OLD
    assert embedding_requests(stand_in) == [OLD[0]]
    assert any("still being built" in note for note in results.notes)
    assert results[0].vector_score is not None
    # the newest mail has no old-model vector yet: the text half finds it
    (found,) = [h for h in interaction_search(user=user, query="container") if h.text_rank]
    assert found.interaction_id == latest.pk and found.vector_score is None

    # the background pass, interrupted after its first chunk: still the old model
    job = Job.objects.get(user=user, kind="embed", payload__scope="all", status="queued")
    assert job.priority == embed.ALL_PRIORITY
    held = claim(job.pk, "host:1", config=get_config())
    ctx = JobContext(
        job=held,
        payload=embed.EmbedPayload(scope="all"),
        deadline=time.monotonic() - 1,
        logger=logging.getLogger("test"),
    )
    metrics = embed.run(held, ctx)
    assert metrics.timed_out
    assert search_space(user_id=user.pk).model == OLD[0]
    assert Embedding.objects.filter(user=user, model=OLD[0]).count() == 5
    (follow,) = ctx.followups
    Job.objects.filter(pk=job.pk).update(status="succeeded")
    continuation = enqueue(
        "embed", user=user, payload=follow.payload, dedupe_key=follow.dedupe_key, parent=job
    )

    # the pass completes: search switches, the old model's vectors and set are gone
    assert run_job(continuation.pk) == "succeeded"
    continuation.refresh_from_db()
    assert continuation.metrics["details"]["complete"] is True
    assert continuation.metrics["details"]["otherModelRowsDeleted"] == 5
    assert EmbeddingSet.objects.get(user=user).model == NEW[0]
    assert EmbeddingSet.objects.get(user=user).status == "complete"
    assert set(Embedding.objects.filter(user=user).values_list("model", "dims")) == {NEW}
    assert Embedding.objects.filter(user=user).count() == 6
    stand_in.requests.clear()
    results = interaction_search(user=user, query="outstanding payment", limit=3)
    assert (results.model, results.dims) == NEW and results.notes == []
    assert embedding_requests(stand_in) == [NEW[0]]


def test_the_pass_over_all_mail_reuses_stored_documents_and_unchanged_vectors(
    user, stand_in, search_config
):
    search_config(openai_model=OLD[0], openai_dimensions=OLD[1])
    interactions = [mail(user, f"Note {n}", f"Body {n}") for n in range(4)]
    run_batch(user, interactions)
    calls = stand_in.count("embeddings")
    job = embeddings_rebuild_enqueue(user_id=user.pk)
    assert run_job(job.pk) == "succeeded"
    assert stand_in.count("embeddings") == calls  # everything was embedded by the batch
    job.refresh_from_db()
    assert job.metrics["itemsSkipped"] == 4 and job.metrics["details"]["documentsWritten"] == 0


def test_rebuild_embeds_mail_that_was_never_in_a_batch(user, stand_in, search_config):
    search_config(openai_model=OLD[0], openai_dimensions=OLD[1])
    # interactions stored before search was installed: no embed job ever saw them
    older = [mail(user, f"Old {n}", f"from before {n}") for n in range(3)]
    job = embeddings_rebuild_enqueue(user_id=user.pk)
    assert embeddings_rebuild_enqueue(user_id=user.pk).pk == job.pk  # one per user at a time
    assert run_job(job.pk) == "succeeded"
    assert set(Embedding.objects.filter(user=user).values_list("interaction_id", flat=True)) == {
        i.pk for i in older
    }
    assert EmbeddingSet.objects.get(user=user).status == "complete"


def test_a_batch_that_completes_the_new_set_leaves_the_old_vectors_to_a_background_job(
    user, stand_in, search_config
):
    search_config(openai_model=OLD[0], openai_dimensions=OLD[1])
    gone = mail(user, "Old", "old text")
    kept = mail(user, "Kept", "kept text")
    run_batch(user, [gone, kept])
    search_config(openai_model=NEW[0], openai_dimensions=NEW[1])
    gone.delete()  # the only interaction without a new vector goes away
    job = run_batch(user, [kept])  # every interaction now has the new model's vector

    job.refresh_from_db()
    assert job.metrics["details"]["complete"] is True
    assert search_space(user_id=user.pk).model == NEW[0]
    cleanup = Job.objects.get(kind="embed", parent=job)
    assert cleanup.payload["scope"] == "all" and cleanup.priority == embed.ALL_PRIORITY
    assert Embedding.objects.filter(model=OLD[0]).exists()  # not deleted on the batch's path
    assert run_job(cleanup.pk) == "succeeded"
    assert set(Embedding.objects.values_list("model", flat=True)) == {NEW[0]}
    assert list(EmbeddingSet.objects.values_list("model", flat=True)) == [NEW[0]]
