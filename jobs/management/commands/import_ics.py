"""Import an iCalendar (.ics) file into a user's Calendar raw events, then start normalization."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from jobs.management.commands._takeout import add_account_arguments, run_import
from jobs.sync.imports import ics_import


class Command(BaseCommand):
    help = (
        "Import the events of an .ics file (Google Takeout: Calendar/*.ics) into the user's raw "
        "Calendar events, then enqueue normalization. The file is streamed one event at a time "
        "(memory holds one event and the calendar's time zones). Every event read is counted as "
        "inserted, updated, unchanged or rejected (no valid DTSTART, unreadable), and the first "
        "rejected ones are shown with their reason; a file that ends inside an event exits "
        "non-zero after importing the events before it. Re-importing a file inserts nothing. "
        "The last output line is the run-metrics JSON. No Google connection is needed: give "
        "--address you@example.com (repeatable, for aliases) to record an offline account."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user", help="username, e-mail address or user id")
        parser.add_argument("path", help="the .ics file")
        add_account_arguments(parser)
        parser.add_argument(
            "--calendar", help="calendar id the events belong to (default: the primary calendar)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run_import(
            self, ics_import, unit="events", options=options, calendar_id=options["calendar"]
        )
