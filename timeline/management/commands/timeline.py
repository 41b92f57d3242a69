"""Show a contact's timeline: newest first, one line per event (or JSON with --json)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.selectors import UserNotFound, user_find
from timeline.selectors import (
    MAX_LIMIT,
    BadCursor,
    ContactNotFound,
    contact_timeline,
    timeline_contact_find,
)


def _limit(value: str) -> int:
    import argparse

    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 1 <= number <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}")
    return number


class Command(BaseCommand):
    help = (
        "Show a contact's timeline, newest first: the contact by e-mail address or id. "
        "--before takes the cursor a previous page printed."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user", help="username, e-mail address or id")
        parser.add_argument("contact", help="the contact's e-mail address or id")
        parser.add_argument("--limit", type=_limit, default=20, help="events (default 20)")
        parser.add_argument("--before", help="cursor of the next page (printed by a previous run)")
        parser.add_argument("--json", action="store_true", help="one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = user_find(identifier=options["user"])
            contact = timeline_contact_find(user=user, identifier=options["contact"])
            page = contact_timeline(
                user=user, contact=contact, before=options["before"], limit=options["limit"]
            )
        except (UserNotFound, ContactNotFound, BadCursor) as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "contact": {
                            "id": contact.pk,
                            "name": contact.display_name,
                            "email": contact.primary_email,
                        },
                        "events": [
                            {
                                "id": event.pk,
                                "type": event.event_type,
                                "occurredAt": event.occurred_at.isoformat(),
                                "title": event.title,
                                "interactionId": event.interaction_id,
                                "data": event.data,
                            }
                            for event in page.events
                        ],
                        "nextBefore": page.next_before,
                    },
                    ensure_ascii=False,
                )
            )
            return
        name = contact.display_name or contact.primary_email
        self.stdout.write(f"{name} <{contact.primary_email}> (contact {contact.pk})")
        if not page.events:
            self.stdout.write("no timeline events")
        for event in page.events:
            self.stdout.write(
                f"{event.occurred_at:%Y-%m-%d %H:%M}  {event.event_type:<17} {event.title}"
            )
        if page.next_before:
            self.stdout.write(f"more: --before '{page.next_before}'")
