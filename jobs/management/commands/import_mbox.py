"""Import a Google Takeout mbox into a user's Gmail raw events, then start their normalization."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from jobs.management.commands._takeout import add_account_arguments, run_import
from jobs.sync.imports import mbox_import


class Command(BaseCommand):
    help = (
        "Stream a Takeout mbox (X-Gmail-Labels honoured) into the user's raw Gmail events in "
        "chunks of 500, then enqueue normalization. Every entry read is counted as inserted, "
        "updated, unchanged, excluded (Spam, Trash, drafts, chats) or rejected (not a mail "
        "message), the first rejected ones shown with their reason; a file with no mail message "
        "is an error. Dates and ids are deterministic (a message without Date or Received takes "
        "its 'From ' line's date), so re-importing a file inserts and updates nothing. The last "
        "output line is the run-metrics JSON. No Google connection is needed: give "
        "--address you@example.com (repeatable, for aliases) to record an offline account."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user", help="username, e-mail address or user id")
        parser.add_argument("path", help="the .mbox file (Google Takeout: Mail/All mail ...mbox)")
        add_account_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        run_import(self, mbox_import, unit="messages", options=options)
