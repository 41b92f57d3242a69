"""The path fuzzed payloads take: stored as the sync stores them, normalized by the real job.

A fuzz example stores its raw events with raw_events_upsert (the sync's own write), runs the
normalize job and the stages that read its output (extract_contacts, write_timeline) in
this process with run_due_jobs, and hands back every raw event's outcome for the test's oracle.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from jobs.enqueue import enqueue
from jobs.models import Interaction, Job, RawEvent
from jobs.runner import run_due_jobs
from jobs.sync.raw_events import RawItem, raw_events_upsert

# the stages that read what normalization made of hostile text (addresses, names, subjects);
# update_rollups and later only count, and each stage run costs ~20 queries per example
DOWNSTREAM = ["extract_contacts", "write_timeline"]
# What a person reads in RawEvent.error: our own sentence, never a bare Python exception.
CLEAR_ERROR_PREFIX = "NormalizationError: "


@dataclass(frozen=True)
class Outcome:
    source_id: str
    payload: object  # as stored (jsonb), which is what the normalizer reads
    status: str
    error: str


def reset(user) -> None:
    """Each example starts from nothing of this user's (the test's transaction holds them)."""
    Job.objects.all().delete()
    Interaction.objects.filter(user=user).delete()
    RawEvent.objects.filter(user=user).delete()


def store_and_normalize(user, account, provider: str, items: list[RawItem]) -> list[Outcome]:
    batch_id = uuid.uuid4()
    raw_events_upsert(
        user_id=user.pk, account_id=account.pk, provider=provider, batch_id=batch_id, items=items
    )
    kind = f"normalize_{provider}"
    enqueue(
        kind,
        user=user.pk,
        payload={"account_id": account.pk},
        batch_id=batch_id,
        dedupe_key=f"{kind}:{user.pk}:{batch_id}",
    )
    run_due_jobs(kinds=[kind, *DOWNSTREAM], until_empty=True)
    check_jobs([kind, "extract_contacts"])
    return [
        Outcome(r.source_id, r.payload, r.status, r.error)
        for r in RawEvent.objects.filter(user=user, batch_id=batch_id).order_by("source_id")
    ]


def check_jobs(expected: list[str]) -> None:
    """Every job of the fuzzed stages succeeded, and the `expected` kinds ran."""
    # the stages after these (embed, generate_insights) stay queued: not what is fuzzed here
    ran = Job.objects.filter(kind__in=[*expected, *DOWNSTREAM])
    jobs = list(ran.values_list("kind", "status", "last_error"))
    for job_kind, status, error in jobs:
        assert status == "succeeded", f"{job_kind} {status}: {error}"
    assert set(expected) <= {job_kind for job_kind, _, _ in jobs}


def print_figures(what: str, tally: Counter[str], started: float) -> None:
    figures = {"fuzzed": what, **tally, "seconds": round(time.monotonic() - started, 1)}
    print("FIGURES: " + json.dumps(figures))


def check_interaction(user, source: str, source_id: str, max_body_chars: int) -> Interaction:
    interaction = Interaction.objects.get(user=user, source=source, source_id=source_id)
    assert interaction.occurred_at is not None and interaction.occurred_at.utcoffset() is not None
    assert "\x00" not in interaction.subject + interaction.body_text
    assert len(interaction.body_text) <= max_body_chars
    json.dumps(interaction.metadata)
    return interaction


def check_failure(outcome: Outcome, *words: str) -> None:
    """A failed raw event says why in our words, and the words name what was wrong."""
    assert outcome.status == "failed", outcome
    assert outcome.error.startswith(CLEAR_ERROR_PREFIX), outcome.error
    assert "Traceback" not in outcome.error
    assert any(word in outcome.error for word in words), outcome.error
