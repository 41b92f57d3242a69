"""List a user's insights: best first, by kind and status, as lines or JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from insights.models import Insight, InsightKind
from insights.selectors import STATUS_FILTERS, insight_list
from jobs.selectors import UserNotFound, user_find


def insight_as_dict(insight: Insight) -> dict[str, Any]:
    contact = insight.contact
    return {
        "id": insight.pk,
        "kind": insight.kind,
        "status": insight.status,
        "score": insight.score,
        "title": insight.title,
        "summary": insight.summary,
        "summarySource": insight.summary_source,
        "llmFallbackReason": insight.llm_fallback_reason,
        "openQuestions": insight.open_questions,
        "contact": (
            {"id": contact.pk, "name": contact.display_name, "email": contact.primary_email}
            if contact is not None
            else None
        ),
        "evidence": insight.evidence,
        "fingerprint": insight.fingerprint,
        "expiresAt": insight.expires_at.isoformat(),
        "createdAt": insight.created_at.isoformat(),
        "updatedAt": insight.updated_at.isoformat(),
    }


class Command(BaseCommand):
    help = (
        "List a user's insights, best first: open ones (new and seen) unless --status says "
        "otherwise; --kind limits the kind (repeatable)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user", help="username, e-mail address or id")
        parser.add_argument(
            "--kind", action="append", choices=InsightKind.values, help="only this kind"
        )
        parser.add_argument(
            "--status",
            choices=list(STATUS_FILTERS),
            default="open",
            help="open (new and seen, the default), all, or one status",
        )
        parser.add_argument("--limit", type=int, default=50, help="default 50; 0 for all")
        parser.add_argument("--json", action="store_true", help="one JSON document")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = user_find(identifier=options["user"])
        except UserNotFound as exc:
            raise CommandError(str(exc)) from exc
        if options["limit"] < 0:
            raise CommandError("--limit must be 0 (all) or more")
        insights = insight_list(user=user, kinds=options["kind"], status=options["status"])
        total = insights.count()
        if options["limit"]:
            insights = insights[: options["limit"]]
        rows = list(insights)
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {"count": total, "insights": [insight_as_dict(i) for i in rows]},
                    indent=2,
                    ensure_ascii=False,
                )
            )
            return
        if not rows:
            self.stdout.write(f"no {options['status']} insights")
            return
        for insight in rows:
            self.stdout.write(
                f"{insight.pk:>7}  {insight.kind:<21} {insight.status:<9} {insight.score:>5.1f}  "
                f"{insight.title}"
            )
            if options["verbosity"] >= 1:
                self.stdout.write(f"{'':>9}{insight.summary}")
        self.stdout.write(f"{len(rows)} of {total} insight(s)")
