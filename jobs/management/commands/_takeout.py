"""What import_mbox and import_ics share (not a command: Django skips "_" modules)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from jobs.google.accounts import google_account_record_offline
from jobs.models import GoogleAccount, GoogleAccountStatus
from jobs.selectors import UserNotFound, user_find
from jobs.sync.imports import ImportFileError, ImportProgress, ImportResult, import_file_check


def run_import(
    command: BaseCommand,
    service: Callable[..., ImportResult],
    *,
    unit: str,
    options: dict[str, Any],
    **extra: Any,
) -> None:
    """What import_mbox and import_ics share: resolve the account, show progress, print metrics."""
    identifier = options["user"]
    try:
        user = user_find(identifier=identifier)
    except UserNotFound as exc:
        raise CommandError(str(exc)) from None
    try:
        # Before the account: a mistyped path must not leave an offline account behind.
        import_file_check(Path(options["path"]))
    except ImportFileError as exc:
        raise CommandError(str(exc)) from None
    account = _import_account(user, identifier, options)
    progress = _Progress(command, unit=unit, verbosity=options["verbosity"])
    try:
        result = service(account=account, path=options["path"], on_progress=progress, **extra)
    except ImportFileError as exc:
        raise CommandError(str(exc)) from None
    progress.done()
    if options["verbosity"] >= 1:
        for line in summary_lines(result, unit=unit):
            command.stdout.write(line)
        if result.next_job is not None:
            command.stdout.write(f"{result.next_job.kind}: job #{result.next_job.pk} queued")
    command.stdout.write(json.dumps(result.metrics_line(), separators=(",", ":")))
    if not result.complete:
        raise CommandError(
            f"'{options['path']}' is truncated: it ends inside an item; the {unit} before it "
            "were imported"
        )


def add_account_arguments(parser: Any) -> None:
    """--account and --address, the same for import_mbox and import_ics."""
    parser.add_argument("--account", help="the Google account address, if the user has several")
    parser.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="EMAIL",
        help=(
            "your address, for a user without a connected Google account (no OAuth needed): "
            "the import records an offline account for it (never synced) whose addresses decide "
            "which mail is yours. Repeat it for your aliases; the first one names the account. "
            "With a connected account of that address, that account is used as it is."
        ),
    )


def _import_account(user: Any, identifier: str, options: dict[str, Any]) -> GoogleAccount:
    addresses = [a.strip().lower() for a in options.get("address") or []]
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            raise CommandError(f"--address '{address}' is not an e-mail address") from None
    if addresses:
        return google_account_record_offline(user=user, addresses=addresses)
    accounts = list(
        GoogleAccount.objects.filter(
            user=user, status__in=[GoogleAccountStatus.ACTIVE, GoogleAccountStatus.OFFLINE]
        ).order_by("status", "pk")  # active before offline
    )
    if options.get("account"):
        wanted = options["account"].strip().lower()
        accounts = [a for a in accounts if a.email == wanted]
        if not accounts:
            raise CommandError(f"user '{identifier}' has no active account {options['account']}")
    active = [a for a in accounts if a.status == GoogleAccountStatus.ACTIVE]
    candidates = active or accounts
    if len(candidates) > 1:
        names = ", ".join(a.email for a in candidates)
        raise CommandError(
            f"user '{identifier}' has several Google accounts ({names}): name one with --account"
        )
    if not accounts:
        others = GoogleAccount.objects.filter(user=user).order_by("email")
        states = ", ".join(f"{a.email} is {a.status}" for a in others)
        raise CommandError(
            f"user '{identifier}' has no connected Google account"
            + (f" ({states})" if states else "")
            + ": connect one, or import without Google access with --address you@example.com "
            "(repeat it for aliases)"
        )
    return candidates[0]


def summary_lines(result: ImportResult, *, unit: str) -> list[str]:
    """What the import did with every item it read, then the first rejected ones and why."""
    counts = result.counts
    parts = [
        f"{counts.inserted} inserted",
        f"{counts.updated} updated",
        f"{result.unchanged} unchanged",
    ]
    if result.excluded:
        parts.append(f"{result.excluded} excluded (in an excluded label)")
    parts.append(f"{result.rejected} rejected")
    lines = [f"{result.fetched} {unit}: {', '.join(parts)}; batch {result.batch_id}"]
    for rejection in result.rejections:
        lines.append(f"  rejected #{rejection.item} (line {rejection.line}): {rejection.reason}")
    if result.rejected > len(result.rejections):
        lines.append(f"  ... and {result.rejected - len(result.rejections)} more rejected")
    return lines


class _Progress:
    """One status line on stderr, rewritten in place on a terminal, a line per chunk otherwise
    (verbosity 2), nothing at verbosity 0."""

    def __init__(self, command: BaseCommand, *, unit: str, verbosity: int) -> None:
        self.command = command
        self.unit = unit
        self.verbosity = verbosity
        self.tty = sys.stderr.isatty()
        self.last = ""

    def __call__(self, progress: ImportProgress) -> None:
        rate = progress.bytes_read / 1e6 / max(progress.elapsed_s, 1e-6)
        self.last = (
            f"{progress.items} {self.unit}, {progress.bytes_read / 1e6:.1f} MB, {rate:.1f} MB/s"
        )
        if self.verbosity >= 1 and self.tty:
            self.command.stderr.write("\r" + self.last, ending="")
            self.command.stderr.flush()
        elif self.verbosity >= 2:
            self.command.stderr.write(self.last)

    def done(self) -> None:
        if self.verbosity >= 1 and self.tty:
            self.command.stderr.write("")
        elif self.verbosity == 1 and self.last:
            self.command.stderr.write(self.last)
