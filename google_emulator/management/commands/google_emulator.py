"""Run the local Google API emulator (Gmail v1, Calendar v3, OAuth) until interrupted."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from google_emulator.faults import SPEC_HELP
from google_emulator.generator import generate_mailbox
from google_emulator.server import GoogleEmulator


class Command(BaseCommand):
    help = (
        "Serve Gmail v1, Calendar v3, OAuth and batch endpoints locally for the real Google "
        "client library: point a discovery document's rootUrl (and token_uri) at the printed URL. "
        "Mail comes from --mbox files (Google Takeout labels honoured) and/or --generate N "
        "realistic messages; events from --ics files and/or --events N. Needs no database."
    )
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("epilog", SPEC_HELP)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
        parser.add_argument("--owner", default="owner@example.com", help="the mailbox address")
        parser.add_argument("--alias", action="append", default=[], help="a sendAs alias")
        parser.add_argument("--mbox", action="append", default=[], metavar="PATH")
        parser.add_argument("--ics", action="append", default=[], metavar="PATH")
        parser.add_argument("--generate", type=int, default=0, metavar="N", help="messages")
        parser.add_argument("--events", type=int, default=40, metavar="N", help="with --generate")
        parser.add_argument("--days", type=int, default=60, help="generated mail spans this")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--faults", default="", metavar="SPEC", help="see the grammar below")
        parser.add_argument("--latency-ms", type=float, default=0.0, help="added per request")
        parser.add_argument(
            "--require-token",
            action="store_true",
            help="accept only access tokens issued by /token (prints a refresh token)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        emulator = _build(options)
        try:
            url = emulator.start(options["host"], options["port"])
        except OSError as error:
            raise CommandError(
                f"cannot listen on {options['host']}:{options['port']}: {error}"
            ) from None
        try:
            self._announce(emulator, url, options)
            self.wait()
        except KeyboardInterrupt:
            self.stdout.write("stopping")
        finally:
            emulator.stop()

    def wait(self) -> None:
        """Block until Ctrl-C."""
        threading.Event().wait()

    def _announce(self, emulator: GoogleEmulator, url: str, options: dict[str, Any]) -> None:
        mailbox = emulator.mailbox()
        events = sum(len(calendar.events()) for calendar in mailbox.calendars())
        self.stdout.write(f"Google API emulator at {url}")
        messages = mailbox.profile()["messagesTotal"]
        self.stdout.write(f"  account {mailbox.email}: {messages} messages, {events} events")
        self.stdout.write(f"  token_uri {url}token, auth_uri {url}o/oauth2/auth")
        if options["require_token"]:
            refresh_token = emulator.register_account(mailbox.email)
            self.stdout.write(f"  refresh token for {mailbox.email}: {refresh_token}")
        for rule in emulator.faults.rules:
            self.stdout.write(f"  fault: {rule}")
        self.stdout.write(self.style.SUCCESS(f"ready {url}"))


def _build(options: dict[str, Any]) -> GoogleEmulator:
    """The emulator the options describe; CommandError for anything unusable."""
    for path in [*options["mbox"], *options["ics"]]:
        if not Path(path).is_file():
            raise CommandError(f"no such file: {path}")
    if options["generate"] < 0 or options["events"] < 0 or options["latency_ms"] < 0:
        raise CommandError("--generate, --events and --latency-ms must not be negative")
    emulator = GoogleEmulator(
        require_token=options["require_token"], latency_s=options["latency_ms"] / 1000
    )
    try:
        emulator.faults.add_spec(options["faults"])
    except ValueError as error:
        raise CommandError(f"--faults: {error}") from None
    generated = None
    if options["generate"]:
        generated = generate_mailbox(
            options["owner"],
            messages=options["generate"],
            events=options["events"],
            seed=options["seed"],
            days=options["days"],
            aliases=options["alias"],
        )
    mailbox = emulator.add_mailbox(options["owner"], generated, aliases=options["alias"])
    for path in options["mbox"]:
        mailbox.load_mbox(path)
    for path in options["ics"]:
        mailbox.load_ics(path)
    return emulator
