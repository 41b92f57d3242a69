"""Insights admin: a user's insights by kind and status, with their evidence; people decide
(mark seen, dismiss, done), the pipeline writes the rest.

Superusers see every user's insights; any other staff member only their own (as in the contacts
admin). The status actions need the change permission on insights and go through
insights.services.insight_set_status; every other field is read-only.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from insights.models import Insight, InsightStatus
from insights.services import insight_set_status
from jobs.admin_base import OwnRowsMixin

_FIELDS = (
    "user",
    "kind",
    "status",
    "contact",
    "title",
    "summary",
    "summary_source",
    "llm_fallback_reason",
    "heuristic_summary",
    "open_questions_display",
    "evidence_display",
    "score",
    "fingerprint",
    "expires_at",
    "created_at",
    "updated_at",
)


@admin.register(Insight)
class InsightAdmin(OwnRowsMixin, admin.ModelAdmin):
    list_display = (
        "title",
        "kind",
        "status",
        "score",
        "contact",
        "summary_source",
        "user",
        "updated_at",
    )
    list_filter = (
        "kind",
        "status",
        "summary_source",
        ("user", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("contact", "user")
    search_fields = ("title", "summary", "contact__display_name", "contact__primary_email")
    search_help_text = "Title, summary, or the contact's name or e-mail address"
    ordering = ("-updated_at", "-id")
    list_per_page = 50
    show_full_result_count = False
    actions = ("mark_seen", "dismiss", "mark_done")
    fields = _FIELDS
    readonly_fields = _FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The change permission allows the status actions on the list; the detail page is
        # read-only (its fields are machine-written; the status changes through the actions).
        return obj is None and super().has_change_permission(request)

    @admin.display(description="evidence")
    def evidence_display(self, insight: Insight) -> str:
        """The numbers first (one row each), then the lists and objects as indented JSON."""
        evidence = insight.evidence if isinstance(insight.evidence, dict) else {}
        scalars = [(k, v) for k, v in evidence.items() if not isinstance(v, (dict, list))]
        nested = [(k, v) for k, v in evidence.items() if isinstance(v, (dict, list))]
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td></tr>", ((k, _scalar(v)) for k, v in scalars)
        )
        blocks = format_html_join(
            "",
            "<tr><th>{}</th><td><pre>{}</pre></td></tr>",
            ((k, json.dumps(v, indent=2, ensure_ascii=False)) for k, v in nested),
        )
        return format_html("<table>{}{}</table>", rows, blocks)

    @admin.display(description="open questions")
    def open_questions_display(self, insight: Insight) -> str:
        items = [q for q in insight.open_questions or [] if isinstance(q, dict)]
        if not items:
            return "-"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{} <small>(interaction {})</small></li>",
                ((q.get("text", ""), q.get("interaction_id") or "-") for q in items),
            ),
        )

    def _set(self, request: HttpRequest, queryset: QuerySet[Insight], status: str) -> None:
        changed = 0
        by_user: dict[int, list[int]] = {}
        for user_id, pk in queryset.values_list("user_id", "pk"):
            by_user.setdefault(user_id, []).append(pk)
        for user_id, ids in by_user.items():
            changed += insight_set_status(user=user_id, insight_ids=ids, status=status)
        self.message_user(
            request,
            f"{changed} insight(s) marked {status}"
            + (
                f"; {queryset.count() - changed} already were."
                if queryset.count() > changed
                else "."
            ),
            messages.SUCCESS if changed else messages.INFO,
        )

    @admin.action(description="Mark as seen", permissions=["change"])
    def mark_seen(self, request: HttpRequest, queryset: QuerySet[Insight]) -> None:
        self._set(request, queryset, InsightStatus.SEEN)

    @admin.action(description="Dismiss (a rerun keeps it dismissed)", permissions=["change"])
    def dismiss(self, request: HttpRequest, queryset: QuerySet[Insight]) -> None:
        self._set(request, queryset, InsightStatus.DISMISSED)

    @admin.action(description="Mark as done", permissions=["change"])
    def mark_done(self, request: HttpRequest, queryset: QuerySet[Insight]) -> None:
        self._set(request, queryset, InsightStatus.DONE)


def _scalar(value: Any) -> str:
    return "-" if value is None else str(value)
