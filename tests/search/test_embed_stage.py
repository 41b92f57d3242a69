"""The embed stage through the job engine, against the OpenAI-compatible stand-in (real HTTP):
documents and vectors of a batch, 0 provider calls on a rerun, outages retried with backoff,
permanent errors failing clearly, fenced writes, deadlines."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from jobs.config import get_config
from jobs.context import JobContext
from jobs.enqueue import enqueue
from jobs.errors import LeaseLost
from jobs.models import Job
from jobs.runner import claim, run_job, tick
from search.models import Embedding, EmbeddingSet, SearchDocument
from search.processors import embed
from search.selectors import interaction_search
from tests.fixtures.openai_server import hashed_embedder
from tests.search.conftest import STAND_IN_DIMS, STAND_IN_MODEL
from tests.search.mail import in_batch, mail, sample_mailbox

pytestmark = pytest.mark.django_db


def embed_job(user, batch, **payload) -> Job:
    return enqueue(
        "embed", user=user, batch_id=batch, payload=payload, dedupe_key=f"embed:{user.pk}:{batch}"
    )


def make_due(job: Job) -> None:
    Job.objects.filter(pk=job.pk).update(run_after=timezone.now() - timedelta(seconds=1))


def test_a_batch_gets_documents_and_one_vector_per_chunk_from_the_provider(user, stand_in):
    interactions, batch = sample_mailbox(user)
    job = embed_job(user, batch)

    assert run_job(job.pk) == "succeeded"

    documents = {d.interaction_id: d for d in SearchDocument.objects.filter(user=user)}
    assert set(documents) == {i.pk for i in interactions}
    first = documents[interactions[0].pk]
    assert first.subject == "Invoice INV-1001 for March"
    assert "still outstanding" in first.body
    # the quoted reply, the signature and the forwarded history are not searched or embedded
    bodies = " ".join(d.body for d in documents.values())
    for canary in ("flamingo", "zeppelin", "walrus", "+1 555"):
        assert canary not in bodies
    rows = list(Embedding.objects.filter(user=user))
    assert len(rows) == len(interactions)  # short mails: one chunk each
    assert {(r.model, r.dims, r.chunk) for r in rows} == {(STAND_IN_MODEL, STAND_IN_DIMS, 0)}
    # the stored vector is the provider's for the chunk text
    row = next(r for r in rows if r.interaction_id == interactions[0].pk)
    expected = np.asarray(hashed_embedder([row.text], STAND_IN_DIMS)[0], dtype=np.float32)
    assert np.allclose(np.asarray(row.vector, dtype=np.float32), expected, atol=1e-6)
    assert row.text == "Invoice INV-1001 for March\n\n" + first.body
    job.refresh_from_db()
    assert job.metrics["itemsFetched"] == 5 and job.metrics["itemsInserted"] == 5
    assert job.metrics["details"]["providerCalls"] == stand_in.count("embeddings") == 1
    assert job.metrics["details"]["documentsWritten"] == 5
    # the batch holds all of this new user's mail: their set is complete, nothing else to run
    assert EmbeddingSet.objects.get(user=user).status == EmbeddingSet.Status.COMPLETE
    assert job.metrics["details"]["complete"] is True
    assert not Job.objects.filter(kind="embed", parent=job).exists()


def test_mail_outside_the_batch_leaves_the_set_building_and_starts_the_pass_over_all(
    user, stand_in
):
    older = mail(user, "Stored before search was installed", "old news")
    _, batch = sample_mailbox(user)
    job = embed_job(user, batch)

    assert run_job(job.pk) == "succeeded"

    assert EmbeddingSet.objects.get(user=user).status == EmbeddingSet.Status.BUILDING
    follow = Job.objects.get(kind="embed", parent=job)
    assert follow.payload["scope"] == "all" and follow.priority == embed.ALL_PRIORITY
    assert follow.batch_id != batch  # a chain of its own, off the batch's path
    assert run_job(follow.pk) == "succeeded"
    assert Embedding.objects.filter(interaction=older).exists()
    assert EmbeddingSet.objects.get(user=user).status == EmbeddingSet.Status.COMPLETE


def test_a_rerun_of_unchanged_text_makes_no_provider_call(user, stand_in):
    _, batch = sample_mailbox(user, count=40)
    assert run_job(embed_job(user, batch).pk) == "succeeded"
    calls = stand_in.count("embeddings")
    assert calls == 3  # 40 texts in batches of 16

    again = embed_job(user, batch, after_id=0)
    Job.objects.filter(kind="embed", status="queued").exclude(pk=again.pk).delete()
    assert run_job(again.pk) == "succeeded"

    assert stand_in.count("embeddings") == calls
    again.refresh_from_db()
    assert again.metrics["itemsInserted"] == 0 and again.metrics["itemsSkipped"] == 40
    assert again.metrics["details"]["providerCalls"] == 0
    assert again.metrics["details"]["documentsWritten"] == 0


def test_a_changed_text_re_embeds_only_its_chunk(user, stand_in):
    interactions, batch = sample_mailbox(user, count=10)
    assert run_job(embed_job(user, batch).pk) == "succeeded"
    calls = stand_in.count("embeddings")
    changed = interactions[3]
    changed.body_text = "A completely new body about pricing tiers."
    changed.save()
    rerun = embed_job(user, in_batch([changed]))
    assert run_job(rerun.pk) == "succeeded"
    assert stand_in.count("embeddings") == calls + 1
    assert stand_in.requests[-1].body["input"] == [f"{changed.subject}\n\n{changed.body_text}"]
    assert Embedding.objects.get(interaction=changed).text.endswith("pricing tiers.")


def test_a_shorter_text_drops_its_extra_chunks(user, stand_in, search_config):
    search_config(openai_max_tokens=40)
    long = mail(user, "Long one", " ".join(f"word{n}" for n in range(60)))
    assert run_job(embed_job(user, in_batch([long])).pk) == "succeeded"
    assert Embedding.objects.filter(interaction=long).count() > 2
    long.body_text = "now short"
    long.save()
    assert run_job(embed_job(user, in_batch([long])).pk) == "succeeded"
    assert list(Embedding.objects.filter(interaction=long).values_list("chunk", "text")) == [
        (0, "Long one\n\nnow short")
    ]


def test_an_outage_retries_with_the_providers_retry_after_and_text_search_still_works(
    user, stand_in
):
    interactions, batch = sample_mailbox(user)
    stand_in.fail_next(1, status=503, retry_after="30")
    job = embed_job(user, batch)

    assert run_job(job.pk) == "retrying"

    job.refresh_from_db()
    assert "503" in job.last_error and job.attempts == 1
    assert job.run_after >= timezone.now() + timedelta(seconds=25)
    # documents are written before the provider is called: full-text search has the batch
    assert SearchDocument.objects.filter(user=user).count() == 5
    assert not Embedding.objects.exists()
    assert job.metrics["details"]["documentsWritten"] == 5
    found = interaction_search(user=user, query="outstanding payment", mode="text")
    assert [h.interaction_id for h in found] == [interactions[0].pk]

    make_due(job)
    assert run_job(job.pk) == "succeeded"
    assert Embedding.objects.filter(user=user).count() == 5


def test_a_permanent_provider_error_fails_the_job_with_the_providers_message(
    user, stand_in, search_config
):
    _, batch = sample_mailbox(user)
    search_config(openai_model="no-such-model")
    job = embed_job(user, batch)

    assert run_job(job.pk) == "failed"

    job.refresh_from_db()
    assert job.attempts == 1
    assert "embedding provider" in job.last_error and "no-such-model" in job.last_error
    assert SearchDocument.objects.filter(user=user).count() == 5  # text search still covers it


def test_a_late_worker_whose_job_was_handed_on_writes_nothing(user, stand_in):
    _, batch = sample_mailbox(user)
    job = embed_job(user, batch)
    late = claim(job.pk, "stalled-host:1", config=get_config())
    assert late is not None
    ctx = JobContext(
        job=late,
        payload=embed.EmbedPayload(),
        deadline=time.monotonic() + 600,
        logger=logging.getLogger("test"),
    )
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert tick().leases_expired == 1
    assert claim(job.pk, "other-host:2", config=get_config()) is not None

    with pytest.raises(LeaseLost):
        embed.run(late, ctx)

    assert not SearchDocument.objects.exists()
    assert not Embedding.objects.exists()
    assert stand_in.count("embeddings") == 0


def test_past_the_deadline_it_continues_from_the_last_chunk_done(user, stand_in, search_config):
    search_config(embed_chunk_size=2)
    interactions, batch = sample_mailbox(user)
    job = embed_job(user, batch)
    held = claim(job.pk, "host:1", config=get_config())
    ctx = JobContext(
        job=held,
        payload=embed.EmbedPayload(),
        deadline=time.monotonic() - 1,  # already past: stop after the first chunk
        logger=logging.getLogger("test"),
    )

    metrics = embed.run(held, ctx)

    assert metrics.timed_out and metrics.items_fetched == 2
    assert Embedding.objects.count() == 2
    (follow,) = ctx.followups
    assert follow.kind == "embed" and follow.dedupe_key == job.dedupe_key
    assert follow.payload["after_id"] == sorted(i.pk for i in interactions)[1]


def test_only_the_users_own_interactions_are_embedded(user, other_user, stand_in):
    theirs = mail(other_user, "Other user's secret", "Not yours")
    mine = mail(user, "Mine", "hello")
    # a batch id that also names another user's raw event
    batch = in_batch([mine])
    in_batch([theirs], batch)
    assert run_job(embed_job(user, batch).pk) == "succeeded"
    assert set(SearchDocument.objects.values_list("interaction_id", flat=True)) == {mine.pk}
    assert set(Embedding.objects.values_list("user_id", flat=True)) == {user.pk}


def test_an_outage_retries_embed_while_contacts_and_timeline_complete_for_the_batch(user, stand_in):
    from contacts.models import InteractionParticipant
    from jobs.models import RawEvent
    from jobs.runner import run_due_jobs
    from tests.contacts.factories import OWN, account_for, gmail
    from timeline.models import TimelineEvent

    account_for(user)
    mails = [
        gmail(frm="Jane Doe <jane@acme.example>", to=[OWN], subject="Pricing for next year"),
        gmail(
            frm=OWN, to=["Jane Doe <jane@acme.example>"], subject="Re: Pricing", labels=("SENT",)
        ),
        gmail(frm="Bob <bob@acme.example>", to=[OWN], subject="Site visit"),
    ]
    batch = in_batch([])  # a fresh batch id
    RawEvent.objects.bulk_create(
        RawEvent(user=user, provider="gmail", source_id=m["id"], payload=m, batch_id=batch)
        for m in mails
    )
    stand_in.fail_next(50, status=503)  # the provider is down for the whole run
    enqueue("normalize_gmail", user=user, batch_id=batch, dedupe_key=f"n:{user.pk}:{batch}")

    run_due_jobs(until_empty=True)

    jobs = {j.kind: j for j in Job.objects.filter(batch_id=batch)}
    assert {"normalize_gmail", "extract_contacts", "write_timeline", "update_rollups"} <= set(jobs)
    for kind in ("normalize_gmail", "extract_contacts", "write_timeline", "update_rollups"):
        assert jobs[kind].status == "succeeded", kind
    assert jobs["embed"].status == "retrying" and "503" in jobs["embed"].last_error
    # Jane (from, to) and Bob (from): three participations, one timeline event each
    assert InteractionParticipant.objects.filter(user=user).count() == 3
    assert TimelineEvent.objects.filter(user=user).count() == 3
    assert SearchDocument.objects.filter(user=user).count() == 3 and not Embedding.objects.exists()

    # the provider comes back: the retry embeds the batch
    stand_in._faults.clear()
    make_due(jobs["embed"])
    assert run_job(jobs["embed"].pk) == "succeeded"
    assert Embedding.objects.filter(user=user).count() == 3
