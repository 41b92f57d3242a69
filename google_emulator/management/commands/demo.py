"""Run the whole pipeline on a generated mailbox against the built-in Google emulator."""

from __future__ import annotations

import secrets
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from google_emulator.demo import DemoOptions, demo_run, summary_json

DEMO_ADMIN = "demo-admin"


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
        parser.add_argument(
            "--serve",
            nargs="?",
            const="127.0.0.1:8000",
            metavar="ADDR:PORT",
            help="then leave a development server running (default 127.0.0.1:8000) with a demo "
            "superuser whose credentials are printed: the pipeline page, contacts, timelines, "
            "insights and search, ready to click through",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["messages"] <= 100_000:
            raise CommandError("--messages must be between 1 and 100000")
        if not 0 <= options["events"] <= 10_000:
            raise CommandError("--events must be between 0 and 10000")
        if options["serve"]:
            _serve_address(options["serve"])  # a bad address is refused before any work
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
        if options["serve"]:
            self._serve(options["serve"])

    def _serve(self, address: str) -> None:
        """Run Django's development server on `address` with a demo superuser.

        The superuser's password is new on every run (printed once, never stored elsewhere).
        The server listens where asked: 127.0.0.1 by default, so only this machine reaches it.
        """
        _serve_address(address)
        password = secrets.token_urlsafe(12)
        admin = get_user_model().objects.filter(username=DEMO_ADMIN).first()
        if admin is None:
            admin = get_user_model().objects.create_superuser(
                DEMO_ADMIN, email="demo.admin@pipeline.example", password=password
            )
        else:
            admin.is_staff = admin.is_superuser = admin.is_active = True
            admin.set_password(password)
            admin.save()
        base = f"http://{address}"
        self.stdout.write(
            f"serving the demo at {base}/admin/ (Ctrl-C stops it)\n"
            f"  sign in as: {DEMO_ADMIN} / {password}\n"
            f"  pipeline:   {base}/admin/jobs/job/pipeline/\n"
            f"  contacts:   {base}/admin/contacts/contact/\n"
            f"  insights:   {base}/admin/insights/insight/\n"
            f"  search:     {base}/admin/search/interactionsearch/\n"
            "  (the Google emulator has stopped: 'sync now' fails until a real account is used)"
        )
        self.stdout.flush()
        call_command("runserver", address, use_reloader=False)


def _serve_address(address: str) -> tuple[str, int]:
    """ADDR:PORT of --serve, or a CommandError saying what is expected."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"--serve expects ADDR:PORT, like 127.0.0.1:8000; got {address!r}")
    return host, int(port)
