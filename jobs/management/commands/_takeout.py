"""What import_mbox and import_ics share (not a command: Django skips "_" modules)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.selectors import UserNotFound, user_find
from jobs.sync.enqueue import SyncTargetError, sync_accounts
from jobs.sync.imports import ImportFileError, ImportProgress, ImportResult


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
        accounts = sync_accounts(user=user, identifier=identifier)
    except (UserNotFound, SyncTargetError) as exc:
        raise CommandError(str(exc)) from None
    if options["account"]:
        accounts = [a for a in accounts if a.email == options["account"].strip().lower()]
        if not accounts:
            raise CommandError(f"user '{identifier}' has no active account {options['account']}")
    progress = _Progress(command, unit=unit, verbosity=options["verbosity"])
    try:
        result = service(account=accounts[0], path=options["path"], on_progress=progress, **extra)
    except ImportFileError as exc:
        raise CommandError(str(exc)) from None
    progress.done()
    if options["verbosity"] >= 1:
        counts = result.counts
        command.stdout.write(
            f"{result.fetched} {unit}: {counts.inserted} inserted, {counts.updated} updated, "
            f"{result.fetched - counts.inserted - counts.updated} skipped "
            f"({result.excluded} excluded); batch {result.batch_id}"
        )
        if result.next_job is not None:
            command.stdout.write(f"{result.next_job.kind}: job #{result.next_job.pk} queued")
    command.stdout.write(json.dumps(result.metrics_line(), separators=(",", ":")))


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
