"""Run the local Google API emulator (Gmail v1, Calendar v3, OAuth) until interrupted, or
inject a new message or event into one that runs (which its push notifications announce)."""

from __future__ import annotations

import argparse
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from google_emulator.faults import SPEC_HELP
from google_emulator.generator import generate_mailbox
from google_emulator.quota import QuotaLimits
from google_emulator.server import GoogleEmulator


class Command(BaseCommand):
    help = (
        "Serve Gmail v1, Calendar v3, OAuth and batch endpoints locally for the real Google "
        "client library: point a discovery document's rootUrl (and token_uri) at the printed URL. "
        "Mail comes from --mbox files (Google Takeout labels honoured) and/or --generate N "
        "realistic messages; events from --ics files and/or --events N. Needs no database. "
        "With --inject message|event it adds one to an emulator already running at --url "
        "and exits."
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
        parser.add_argument(
            "--account",
            action="append",
            default=[],
            metavar="EMAIL",
            help="a further account with its own mailbox and calendar (repeatable); with "
            "--generate it gets its own generated mail. Each token acts for its own account only",
        )
        parser.add_argument("--mbox", action="append", default=[], metavar="PATH")
        parser.add_argument("--ics", action="append", default=[], metavar="PATH")
        parser.add_argument("--generate", type=int, default=0, metavar="N", help="messages")
        parser.add_argument("--events", type=int, default=40, metavar="N", help="with --generate")
        parser.add_argument("--days", type=int, default=60, help="generated mail spans this")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--faults", default="", metavar="SPEC", help="see the grammar below")
        parser.add_argument(
            "--fault-seed", type=int, default=0, help="seed of the PERCENT%% faults' draws"
        )
        parser.add_argument("--latency-ms", type=float, default=0.0, help="added per HTTP request")
        parser.add_argument(
            "--part-latency-ms",
            type=float,
            default=0.0,
            help="added per API call: a plain call, or each part of a batch",
        )
        parser.add_argument(
            "--part-concurrency",
            type=int,
            default=1,
            help="batch parts served at once (default 1: one after the other)",
        )
        parser.add_argument(
            "--no-quota",
            action="store_true",
            help="do not enforce Google's per-minute quotas (6,000 Gmail units and 600 Calendar "
            "requests per user, 1,200,000 units and 10,000 requests per project)",
        )
        parser.add_argument(
            "--require-token",
            action="store_true",
            help="accept only access tokens issued by /token (prints a refresh token)",
        )
        push = parser.add_argument_group("push notifications")
        push.add_argument(
            "--pubsub-push",
            action="append",
            default=[],
            metavar="TOPIC=URL",
            help="a Pub/Sub push subscription: Gmail notifications published to TOPIC (the "
            "topic users.watch names) are POSTed to URL with a signed OIDC token (repeatable)",
        )
        push.add_argument(
            "--pubsub-audience",
            default="",
            metavar="AUDIENCE",
            help="the audience of the push tokens (default: each subscription's URL)",
        )
        push.add_argument(
            "--push-service-account",
            default="",
            metavar="EMAIL",
            help="the service account the push tokens are signed for",
        )
        inject = parser.add_argument_group("inject into a running emulator")
        inject.add_argument(
            "--inject",
            choices=["message", "event"],
            help="add a new message (or calendar event) to the emulator at --url, then exit",
        )
        inject.add_argument(
            "--url", default="http://127.0.0.1:8765/", help="the running emulator's root URL"
        )
        inject.add_argument(
            "--inject-account", default="", metavar="EMAIL", help="whose (default: the first)"
        )
        inject.add_argument("--subject", default="", help="the message's subject or event's")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["inject"]:
            self.stdout.write(json.dumps(_inject(options)))
            return
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
        self.stdout.write(f"Google API emulator at {url}")
        for email in emulator.accounts.emails():
            mailbox = emulator.mailbox(email)
            events = sum(len(calendar.events()) for calendar in mailbox.calendars())
            messages = mailbox.profile()["messagesTotal"]
            self.stdout.write(f"  account {mailbox.email}: {messages} messages, {events} events")
        self.stdout.write(f"  token_uri {url}token, auth_uri {url}o/oauth2/auth")
        self.stdout.write("  consent signs in the account login_hint names (else the first)")
        if options["require_token"]:
            for email in emulator.accounts.emails():
                refresh_token = emulator.register_account(email)
                self.stdout.write(f"  refresh token for {email}: {refresh_token}")
        limits = emulator.quota.limits
        if limits is None:
            self.stdout.write("  quota: off")
        else:
            self.stdout.write(
                f"  quota per minute (sliding): Gmail {limits.gmail_units_per_user:,.0f} units "
                f"per user, {limits.gmail_units_per_project:,.0f} per project; Calendar "
                f"{limits.calendar_requests_per_user:,.0f} requests per user, "
                f"{limits.calendar_requests_per_project:,.0f} per project"
            )
        for rule in emulator.faults.rules:
            self.stdout.write(f"  fault: {rule}")
        if options["pubsub_push"]:
            self.stdout.write(f"  push tokens verify against {emulator.jwks_url}")
        for topic, subscriptions in emulator.push.subscriptions().items():
            for subscription in subscriptions:
                self.stdout.write(
                    f"  Pub/Sub push: {topic} -> {subscription.endpoint} "
                    f"(audience {subscription.audience})"
                )
        self.stdout.write(self.style.SUCCESS(f"ready {url}"))


def _build(options: dict[str, Any]) -> GoogleEmulator:
    """The emulator the options describe; CommandError for anything unusable."""
    for path in [*options["mbox"], *options["ics"]]:
        if not Path(path).is_file():
            raise CommandError(f"no such file: {path}")
    for name in ("generate", "events", "latency_ms", "part_latency_ms"):
        if options[name] < 0:
            raise CommandError(f"--{name.replace('_', '-')} must not be negative")
    if options["part_concurrency"] < 1:
        raise CommandError("--part-concurrency must be at least 1")
    emulator = GoogleEmulator(
        require_token=options["require_token"],
        latency_s=options["latency_ms"] / 1000,
        part_latency_s=options["part_latency_ms"] / 1000,
        part_concurrency=options["part_concurrency"],
        quota=None if options["no_quota"] else QuotaLimits(),
        fault_seed=options["fault_seed"],
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
    for spec in options["pubsub_push"]:
        topic, _, endpoint = spec.partition("=")
        if not topic.startswith("projects/") or "/topics/" not in topic:
            raise CommandError(f"--pubsub-push {spec}: expected projects/P/topics/T=URL")
        if not endpoint.startswith(("http://", "https://")):
            raise CommandError(f"--pubsub-push {spec}: the URL must start with http(s)://")
        emulator.push.subscribe(
            topic,
            endpoint,
            audience=options["pubsub_audience"] or None,
            **(
                {"service_account": options["push_service_account"]}
                if options["push_service_account"]
                else {}
            ),
        )
    mailbox = emulator.add_mailbox(options["owner"], generated, aliases=options["alias"])
    for path in options["mbox"]:
        mailbox.load_mbox(path)
    for path in options["ics"]:
        mailbox.load_ics(path)
    for number, email in enumerate(options["account"], start=1):
        if emulator.accounts.find(email) is not None:
            raise CommandError(f"--account {email}: already served")
        extra = None
        if options["generate"]:
            extra = generate_mailbox(
                email,
                messages=options["generate"],
                events=options["events"],
                seed=options["seed"] + number,
                days=options["days"],
            )
        emulator.add_mailbox(email, extra)
    return emulator


def _inject(options: dict[str, Any]) -> dict:
    """POST the injection to the running emulator; its answer, or CommandError in one line."""
    url = options["url"].rstrip("/") + f"/emulator/inject/{options['inject']}"
    body: dict[str, Any] = {}
    if options["inject_account"]:
        body["account"] = options["inject_account"]
    if options["subject"]:
        body["subject" if options["inject"] == "message" else "summary"] = options["subject"]
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise CommandError(f"the emulator at {options['url']} refused: {message}") from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"no emulator answers at {options['url']}: {exc}") from None
