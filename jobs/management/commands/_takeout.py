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
