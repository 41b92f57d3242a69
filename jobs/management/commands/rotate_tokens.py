"""manage.py rotate_tokens: re-encrypt stored Google tokens with the newest encryption key."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.google.accounts import google_account_tokens_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored Google token with the first key of "
        "CRM_PIPELINE_ENCRYPTION_KEYS. Rotate a key by prepending the new one (new,old), "
        "running this command, then removing the old key. Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=500,
            help="Accounts locked and re-encrypted per transaction (default 500).",
        )

    def handle(self, *args: Any, chunk_size: int, verbosity: int, **options: Any) -> None:
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1")
        try:
            result = google_account_tokens_rotate(chunk_size=chunk_size)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if verbosity >= 1:
            self.stdout.write(
                f"{result.accounts} account(s): {result.rotated} token(s) re-encrypted, "
                f"{result.current} already under the current key."
            )
