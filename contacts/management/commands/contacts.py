"""List a user's contacts: newest activity first, optionally searched, as a table or JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from contacts.models import Contact
from contacts.selectors import ORDERINGS, contact_list
from jobs.selectors import UserNotFound, user_find


def contact_as_dict(contact: Contact) -> dict[str, Any]:
    def when(value):
        return value.isoformat() if value else None

    return {
        "id": contact.pk,
        "name": contact.display_name,
        "email": contact.primary_email,
        "emails": sorted(i.value for i in contact.identities.all()),
        "companyDomain": contact.company_domain,
        "firstInteractionAt": when(contact.first_interaction_at),
        "lastInteractionAt": when(contact.last_interaction_at),
        "lastInboundAt": when(contact.last_inbound_at),
        "lastOutboundAt": when(contact.last_outbound_at),
        "interactions": contact.interaction_count,
        "interactions30d": contact.interactions_30d,
        "interactions90d": contact.interactions_90d,
        "interactions365d": contact.interactions_365d,
        "meetings": contact.meeting_count,
    }


class Command(BaseCommand):
    help = "List a user's contacts (newest activity first); --search by name, e-mail or domain."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user", help="username, e-mail address or id")
        parser.add_argument("--search", "-s", default=None, help="name, e-mail or domain")
        parser.add_argument("--ordering", choices=list(ORDERINGS), default="-last_interaction_at")
        parser.add_argument("--limit", type=int, default=50, help="default 50; 0 for all")
        parser.add_argument("--json", action="store_true", help="one JSON document")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = user_find(identifier=options["user"])
        except UserNotFound as exc:
            raise CommandError(str(exc)) from exc
        if options["limit"] < 0:
            raise CommandError("--limit must be 0 (all) or more")
        contacts = contact_list(
            user=user, query=options["search"], ordering=options["ordering"]
        ).prefetch_related("identities")
        total = contacts.count()
        if options["limit"]:
            contacts = contacts[: options["limit"]]
        rows = [contact_as_dict(c) for c in contacts]
        if options["json"]:
            self.stdout.write(json.dumps({"count": total, "contacts": rows}, indent=2))
            return
        if not rows:
            self.stdout.write(
                "no contacts" + (f" matching {options['search']!r}" if options["search"] else "")
            )
            return
        for row in rows:
            last = (row["lastInteractionAt"] or "-")[:16].replace("T", " ")
            self.stdout.write(
                f"{row['id']:>7}  {row['name'][:30]:<30}  {row['email'][:40]:<40}  "
                f"{last:<16}  {row['interactions']:>5} interaction(s)"
            )
        self.stdout.write(f"{len(rows)} of {total} contact(s)")
