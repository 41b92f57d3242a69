"""Search a user's interactions: hybrid (vectors and full text fused), best first."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.selectors import UserNotFound, user_find
from search.selectors import (
    MAX_LIMIT,
    MODES,
    ContactNotFound,
    SearchError,
    contact_find,
    interaction_search,
)


def _limit(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 1 <= number <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}")
    return number


def _since(value: str) -> date | datetime:
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date: {value!r} (expected YYYY-MM-DD or an ISO 8601 date and time)"
        ) from None


class Command(BaseCommand):
    help = (
        "Search a user's e-mails and meetings: semantic (embeddings) and full-text rankings "
        "fused, one line per interaction with its scores and the matching snippet."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user", help="username, e-mail address or id")
        parser.add_argument("query", help="what to look for, in your own words")
        parser.add_argument(
            "--contact", help="only interactions this contact (e-mail or id) took part in"
        )
        parser.add_argument("--since", type=_since, help="only interactions on or after this date")
        parser.add_argument("--limit", type=_limit, default=10, help="results (default 10)")
        parser.add_argument(
            "--mode", choices=MODES, default="hybrid", help="hybrid (default), vector or text"
        )
        parser.add_argument("--json", action="store_true", help="one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = user_find(identifier=options["user"])
            contact = (
                contact_find(user=user, identifier=options["contact"])
                if options["contact"]
                else None
            )
            results = interaction_search(
                user=user,
                query=options["query"],
                limit=options["limit"],
                contact=contact,
                since=options["since"],
                mode=options["mode"],
            )
        except (UserNotFound, ContactNotFound, SearchError) as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "query": options["query"],
                        "mode": results.mode,
                        "model": results.model,
                        "dims": results.dims,
                        "notes": results.notes,
                        "results": [hit.as_dict() for hit in results],
                    },
                    ensure_ascii=False,
                )
            )
            return
        for note in results.notes:
            self.stdout.write(f"note: {note}")
        if not results:
            self.stdout.write("no results")
        for n, hit in enumerate(results, start=1):
            vector = f"{hit.vector_score:.3f}" if hit.vector_score is not None else "  -  "
            text = f"{hit.text_score:.3f}" if hit.text_score is not None else "  -  "
            self.stdout.write(
                f"{n:>3}. {hit.occurred_at:%Y-%m-%d %H:%M}  {hit.subject or '(no subject)'}"
                f"  [interaction {hit.interaction_id}; fused {hit.fused_score:.4f},"
                f" vector {vector}, text {text}]"
            )
            if hit.snippet:
                self.stdout.write(f"      {hit.snippet}")
