"""Operator's view of jobs: read-only rows, every attempt's error, retry / requeue / cancel."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from jobs.dispatcher import REGISTRY
from jobs.models import Job
from jobs.services import job_cancel, job_requeue, job_retry


class KindFilter(admin.SimpleListFilter):
    """Kinds from the registry: a DISTINCT over a million rows would scan the whole table."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(kind, kind) for kind in sorted(REGISTRY)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(kind=self.value()) if self.value() else queryset


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "user",
        "attempts_display",
        "run_after",
        "duration_display",
        "items_inserted",
        "error_excerpt",
    )
    list_filter = ("status", KindFilter)
    list_select_related = ("user",)
    search_fields = ("user__username", "user__email")
    search_help_text = "Username, email, or a batch id / job id"
    # A full COUNT(*) per page is the slow part of a million-row changelist.
    show_full_result_count = False
    list_per_page = 50
    ordering = ("-id",)
    actions = ("retry_jobs", "requeue_jobs", "cancel_jobs")
    raw_id_fields = ("user", "parent")
    fields = (
        "id",
        "kind",
        "status",
        "user",
        "batch_id",
        "dedupe_key",
        "parent",
        "payload_pretty",
        "attempts",
        "max_attempts",
        "priority",
        "run_after",
        "offered_at",
        "lease_expires_at",
        "locked_by",
        "cancel_requested",
        "created_at",
        "started_at",
        "finished_at",
        "metrics_pretty",
        "attempt_errors",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return request.user.is_superuser

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        term = search_term.strip()
        try:
            return queryset.filter(batch_id=uuid.UUID(term)), False
        except ValueError:
            pass
        if term.isdigit():
            return queryset.filter(pk=int(term)) | queryset.filter(user_id=int(term)), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="attempts")
    def attempts_display(self, job: Job) -> str:
        return f"{job.attempts}/{job.max_attempts}"

    @admin.display(description="duration")
    def duration_display(self, job: Job) -> str:
        duration = job.duration
        return f"{duration.total_seconds():.1f}s" if duration is not None else "-"

    @admin.display(description="inserted")
    def items_inserted(self, job: Job) -> Any:
        return (job.metrics or {}).get("itemsInserted", "-")

    @admin.display(description="last error")
    def error_excerpt(self, job: Job) -> str:
        return (job.last_error.strip().splitlines() or [""])[-1][:120]

    @admin.display(description="payload")
    def payload_pretty(self, job: Job) -> str:
        return format_html("<pre>{}</pre>", json.dumps(job.payload, indent=2, sort_keys=True))

    @admin.display(description="metrics")
    def metrics_pretty(self, job: Job) -> str:
        return format_html("<pre>{}</pre>", json.dumps(job.metrics, indent=2, sort_keys=True))

    @admin.display(description="errors, one per failed attempt")
    def attempt_errors(self, job: Job) -> str:
        if not job.errors:
            return "-"
        return format_html(
            "<pre>{}</pre>",
            "\n\n".join(
                f"attempt {e.get('attempt')} at {e.get('at')}:\n{e.get('error')}"
                for e in job.errors
            ),
        )

    @admin.action(description="Retry selected failed/cancelled jobs", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        count = job_retry(job_ids=queryset.values_list("pk", flat=True))
        skipped = queryset.count() - count
        self.message_user(request, f"{count} job(s) queued for retry.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"{skipped} job(s) skipped: only failed or cancelled jobs with a free lane retry.",
                messages.WARNING,
            )

    @admin.action(description="Requeue selected finished jobs (run again)", permissions=["change"])
    def requeue_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        jobs = job_requeue(job_ids=queryset.values_list("pk", flat=True))
        fresh = [j for j in jobs if not getattr(j, "deduplicated", False)]
        self.message_user(request, f"{len(fresh)} job(s) requeued as new jobs.", messages.SUCCESS)
        if len(jobs) != len(fresh):
            self.message_user(
                request,
                f"{len(jobs) - len(fresh)} already had an active job in their lane.",
                messages.WARNING,
            )

    @admin.action(description="Cancel selected jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        cancelled, asked = job_cancel(job_ids=queryset.values_list("pk", flat=True))
        self.message_user(
            request,
            f"{cancelled} job(s) cancelled; {asked} running job(s) asked to stop.",
            messages.SUCCESS,
        )


# Registers GoogleAccountAdmin.
from jobs.google import admin as _google_admin  # noqa: E402, F401
