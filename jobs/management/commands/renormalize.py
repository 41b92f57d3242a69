"""Replay a user's raw events through normalization: all of them, or only the failed ones."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.models import Provider
from jobs.normalization.services import (
    NormalizationReport,
    raw_events_normalize,
    raw_events_reset,
)
from jobs.selectors import UserNotFound, user_find


class Command(BaseCommand):
    help = (
        "Reset a user's raw events to pending (all, or --failed-only) and normalize them inline; "
        "prints a progress line per chunk and a final JSON line with the counts."
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
        total = NormalizationReport()
        for provider in providers:

            def progress(chunk: NormalizationReport, provider: str = provider) -> None:
                self.stdout.write(
                    f"{provider}: {chunk.fetched} raw event(s): {chunk.inserted} inserted, "
                    f"{chunk.updated} updated, {chunk.unchanged} unchanged, {chunk.failed} failed"
                )

            total.add(
                raw_events_normalize(
                    user_id=user.pk, provider=provider, on_chunk=progress if verbose else None
                )
            )
        self.stdout.write(json.dumps(total.as_dict()))
