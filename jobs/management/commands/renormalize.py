"""Replay a user's raw events through normalization: all of them, or only the failed ones.

The raw events it normalizes join a batch of its own; the stages that follow normalization
(jobs.pipeline: extract_contacts, then write_timeline and update_rollups) are then enqueued
for that batch, so contacts, participants, the timeline and the rollups follow the replay.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.enqueue import enqueue
from jobs.models import Provider
from jobs.normalization.services import (
    NormalizationReport,
    raw_events_normalize,
    raw_events_reset,
)
from jobs.pipeline import next_stages
from jobs.selectors import UserNotFound, user_find
from jobs.sync.sweep import normalize_kind


class Command(BaseCommand):
    help = (
        "Reset a user's raw events to pending (all, or --failed-only) and normalize them inline; "
        "prints a progress line per chunk and a final JSON line with the counts. The raw events "
        "normalized join a batch of their own, and the stages that follow normalization "
        "(extract_contacts, then write_timeline and update_rollups) are enqueued for it; the "
        "jobs started are named on stderr."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user", help="username, e-mail address or id")
        parser.add_argument(
            "--failed-only", action="store_true", help="only raw events that failed to normalize"
        )
        parser.add_argument(
            "--provider", choices=[*Provider.values, "all"], default="all", help="default: all"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = user_find(identifier=options["user"])
        except UserNotFound as exc:
            raise CommandError(str(exc)) from exc
        providers = Provider.values if options["provider"] == "all" else [options["provider"]]
        reset = raw_events_reset(
            user_id=user.pk, providers=providers, failed_only=options["failed_only"]
        )
        verbose = options["verbosity"] >= 1
        if verbose:
            self.stdout.write(f"reset {reset} raw event(s) of {user} to pending")
        batch_id = uuid.uuid4()
        total = NormalizationReport()
        following: list[str] = []
        for provider in providers:

            def progress(chunk: NormalizationReport, provider: str = provider) -> None:
                self.stdout.write(
                    f"{provider}: {chunk.fetched} raw event(s): {chunk.inserted} inserted, "
                    f"{chunk.updated} updated, {chunk.unchanged} unchanged, {chunk.failed} failed"
                )

            report = raw_events_normalize(
                user_id=user.pk,
                provider=provider,
                into_batch=batch_id,
                on_chunk=progress if verbose else None,
            )
            total.add(report)
            if report.fetched:
                following += [
                    k for k in next_stages(normalize_kind(provider)) if k not in following
                ]
        for kind in following:
            job = enqueue(
                kind, user=user.pk, batch_id=batch_id, dedupe_key=f"{kind}:{user.pk}:{batch_id}"
            )
            if verbose:
                self.stderr.write(f"started {kind} job #{job.pk} for batch {batch_id}")
        self.stdout.write(json.dumps(total.as_dict()))
