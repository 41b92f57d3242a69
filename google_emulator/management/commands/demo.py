"""Run the whole pipeline on a generated mailbox against the built-in Google emulator."""

from __future__ import annotations

import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from google_emulator.demo import DemoOptions, demo_run, summary_json


class Command(BaseCommand):
    help = (
        "Migrate, connect a demo user to an in-process Google API emulator loaded with a "
        "generated mailbox and calendar, and run the sync chain with real workers. "
        "The last line is a JSON summary. Running it again inserts nothing new."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--messages", type=int, default=1000, help="messages (default 1000)")
        parser.add_argument("--events", type=int, default=60, help="calendar events (default 60)")
        parser.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
        parser.add_argument(
            "--workers",
            choices=["cluster", "inline"],
            default="cluster",
            help="run jobs on a qcluster subprocess (default) or in this process",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["messages"] <= 100_000:
            raise CommandError("--messages must be between 1 and 100000")
        if not 0 <= options["events"] <= 10_000:
            raise CommandError("--events must be between 0 and 10000")
        say = self.stdout.write if options["verbosity"] >= 1 else (lambda _: None)
        started = time.monotonic()
        say("applying migrations")
        call_command("migrate", verbosity=0, interactive=False)
        say(f"migrations applied ({time.monotonic() - started:.1f} s)")
        opts = DemoOptions(
            messages=options["messages"],
            events=options["events"],
            seed=options["seed"],
            workers=options["workers"],
        )
        try:
            summary = demo_run(options=opts, say=say)
        except TimeoutError as exc:
            raise CommandError(str(exc)) from exc
        if summary["rawEventsInserted"] == 0 and summary["interactionsInserted"] == 0:
            say("nothing new: this demo mailbox was already synced (idempotent re-run)")
        self.stdout.write(summary_json(summary))
