"""Operator's view of the pipeline: jobs (read-only rows, every attempt's error, retry /
requeue / cancel, also from a job's own page), the pipeline page (jobs.dashboard), and the
rows the pipeline stores: raw events and interactions.

Superusers (the pipeline's operators) see every user's rows and the pipeline page; any other
staff member sees and acts on only their own rows (jobs.admin_base.OwnRowsMixin)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from django.apps import apps
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from jobs.admin_base import OwnRowsMixin, ReadOnlyPageMixin
from jobs.dashboard import pipeline_context
from jobs.dispatcher import REGISTRY
from jobs.enqueue import enqueue
from jobs.models import Interaction, Job, JobStatus, RawEvent
from jobs.models.job import ACTIVE_STATUSES, FINISHED_STATUSES
from jobs.normalization.services import raw_events_reset
from jobs.services import job_cancel, job_requeue, job_retry
from jobs.status import error_pattern_sql, failure_group_job_ids, pipeline_status
from jobs.sync.sweep import normalize_kind

# The error column of the changelist: this much of the last line, the whole of it in the
# tooltip, everything on the job's page.
ERROR_EXCERPT_CHARS = 160


class KindFilter(admin.SimpleListFilter):
    """Kinds from the registry: a DISTINCT over a million rows would scan the whole table."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(kind, kind) for kind in sorted(REGISTRY)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(kind=self.value()) if self.value() else queryset


class ErrorPatternFilter(admin.SimpleListFilter):
    """The jobs of one failure group of the pipeline page (jobs.status.error_pattern_sql).

    Offered only as a link from that page: listing every pattern would group the whole table.
    """

    title = "error pattern"
    parameter_name = "error_pattern"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value[:80])] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if not self.value():
            return queryset
        return queryset.alias(error_pattern=RawSQL(error_pattern_sql(), ())).filter(
            error_pattern=self.value()
        )


@admin.register(Job)
class JobAdmin(OwnRowsMixin, ReadOnlyPageMixin, admin.ModelAdmin):
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
    list_filter = ("status", KindFilter, ErrorPatternFilter)
    list_select_related = ("user",)
    search_fields = ("user__username", "user__email")
    search_help_text = "Username, email, or a batch id / job id"
    # A full COUNT(*) per page is the slow part of a million-row changelist.
    show_full_result_count = False
    list_per_page = 50
    ordering = ("-id",)
    actions = ("retry_jobs", "requeue_jobs", "cancel_jobs")
    change_form_template = "admin/jobs/job/change_form.html"
    change_list_template = "admin/jobs/job/change_list.html"
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
        """The last line (a traceback's exception), wrapped, never clipped: the whole line in
        the tooltip, the whole error on the job's page."""
        line = (job.last_error.strip().splitlines() or [""])[-1]
        if not line:
            return ""
        shown = line if len(line) <= ERROR_EXCERPT_CHARS else line[: ERROR_EXCERPT_CHARS - 1] + "…"
        return format_html('<span class="job-error" title="{}">{}</span>', line, shown)

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

    # -- the pipeline page and the buttons of a job's page ------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("pipeline/", wrap(self.pipeline_view), name="jobs_job_pipeline"),
            path(
                "pipeline/retry-group/",
                wrap(require_POST(self.retry_group_view)),
                name="jobs_job_pipeline_retry_group",
            ),
            path(
                "<int:object_id>/act/<str:verb>/",
                wrap(require_POST(self.job_action_view)),
                name="jobs_job_act",
            ),
            *super().get_urls(),
        ]

    def pipeline_view(self, request: HttpRequest) -> TemplateResponse:
        """The pipeline page: jobs.status.pipeline_status() laid out by jobs.dashboard.

        It shows every user's figures and accounts: superusers (the pipeline's operators)
        only; other staff see their own rows on the changelists."""
        if not request.user.is_superuser or not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            **pipeline_context(pipeline_status()),
            "title": "Pipeline",
            "opts": self.model._meta,
            "can_change": self.has_change_permission(request),
        }
        return TemplateResponse(request, "admin/jobs/pipeline.html", context)

    def retry_group_view(self, request: HttpRequest) -> HttpResponse:
        """Retry every failed job of one failure group (kind and error pattern) of the page,
        whoever's they are: superusers only, as the page."""
        if not request.user.is_superuser or not self.has_change_permission(request):
            raise PermissionDenied
        kind, pattern = request.POST.get("kind", ""), request.POST.get("pattern", "")
        try:
            since = datetime.fromisoformat(request.POST.get("since", ""))
        except ValueError:
            since = None
        if not kind or since is None or since.tzinfo is None:
            self.message_user(request, "That failure group is not valid.", messages.ERROR)
        else:
            ids = failure_group_job_ids(kind=kind, pattern=pattern, since=since)
            retried = job_retry(job_ids=ids)
            self.message_user(
                request,
                f"{retried} of {len(ids)} failed {kind} job(s) queued for retry.",
                messages.SUCCESS if retried else messages.WARNING,
            )
        return HttpResponseRedirect(reverse("admin:jobs_job_pipeline"))

    def job_action_view(self, request: HttpRequest, object_id: int, verb: str) -> HttpResponse:
        """The buttons of a job's own page: retry, requeue, cancel (POST, change permission)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        job = get_object_or_404(self.get_queryset(request), pk=object_id)
        target = job.pk
        if verb == "retry":
            done = job_retry(job_ids=[job.pk])
            self._say(request, done, f"Job #{job.pk} queued for retry.", RETRY_REFUSED)
        elif verb == "requeue":
            created = job_requeue(job_ids=[job.pk])
            if created and not getattr(created[0], "deduplicated", False):
                target = created[0].pk
                self.message_user(request, f"Requeued as job #{target}.", messages.SUCCESS)
            elif created:
                target = created[0].pk
                self.message_user(
                    request, f"Job #{target} is already active in this lane.", messages.WARNING
                )
            else:
                self.message_user(request, "Only a finished job can be requeued.", messages.WARNING)
        elif verb == "cancel":
            cancelled, asked = job_cancel(job_ids=[job.pk])
            if cancelled:
                self.message_user(request, f"Job #{job.pk} cancelled.", messages.SUCCESS)
            elif asked:
                self.message_user(
                    request,
                    f"Job #{job.pk} is running: it was asked to stop at its next checkpoint.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, "Only an active job can be cancelled.", messages.WARNING)
        else:
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[target]))

    def _say(self, request: HttpRequest, done: int, success: str, refused: str) -> None:
        if done:
            self.message_user(request, success, messages.SUCCESS)
        else:
            self.message_user(request, refused, messages.WARNING)

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        job = context.get("original")
        if job is not None and self.has_change_permission(request, job):
            context["job_buttons"] = [
                (verb, label)
                for verb, label, statuses in JOB_BUTTONS
                if job.status in statuses and not (verb == "cancel" and job.cancel_requested)
            ]
        return super().render_change_form(request, context, *args, **kwargs)

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


RETRY_REFUSED = "Only a failed or cancelled job whose lane is free can be retried."
# (verb, label, the statuses a job shows the button in)
JOB_BUTTONS = (
    ("retry", "Retry", (JobStatus.FAILED, JobStatus.CANCELLED)),
    ("requeue", "Requeue (run again as a new job)", FINISHED_STATUSES),
    ("cancel", "Cancel", ACTIVE_STATUSES),
)


@admin.register(RawEvent)
class RawEventAdmin(OwnRowsMixin, admin.ModelAdmin):
    """Payloads as fetched; a failed one shows its error and can be normalized again."""

    list_display = (
        "id",
        "provider",
        "source_id",
        "status",
        "account",
        "user",
        "occurred_at",
        "error_excerpt",
        "fetched_at",
    )
    # only the accounts of the rows this user may see (a staff member: their own)
    list_filter = ("status", "provider", ("account", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("user", "account")
    search_fields = ("source_id", "=batch_id")
    search_help_text = "Source id, or a batch id"
    show_full_result_count = False
    list_per_page = 50
    ordering = ("-id",)
    actions = ("normalize_again",)
    raw_id_fields = ("user", "account")
    fields = (
        "id",
        "user",
        "account",
        "provider",
        "source_id",
        "status",
        "error",
        "batch_id",
        "occurred_at",
        "fetched_at",
        "updated_at",
        "interaction_link",
        "payload_pretty",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # No form to save: "normalize again" needs the change permission, asked for itself.
        return False if obj is not None else super().has_change_permission(request, obj)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[RawEvent], search_term: str
    ) -> tuple[QuerySet[RawEvent], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(batch_id=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(source_id=term), False

    @admin.display(description="error")
    def error_excerpt(self, raw: RawEvent) -> str:
        if not raw.error:
            return ""
        shown = raw.error if len(raw.error) <= 120 else raw.error[:119] + "…"
        return format_html('<span class="job-error" title="{}">{}</span>', raw.error, shown)

    @admin.display(description="interaction")
    def interaction_link(self, raw: RawEvent) -> str:
        found = Interaction.objects.filter(
            user_id=raw.user_id, source=raw.provider, source_id=raw.source_id
        ).values_list("pk", flat=True)
        if not found:
            return "-"
        url = reverse("admin:jobs_interaction_change", args=[found[0]])
        return format_html('<a href="{}">interaction #{}</a>', url, found[0])

    @admin.display(description="payload")
    def payload_pretty(self, raw: RawEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(raw.payload, indent=2, sort_keys=True))

    @admin.action(
        description="Normalize again (back to pending, then a normalize job per user)",
        permissions=["change"],
    )
    def normalize_again(self, request: HttpRequest, queryset: QuerySet[RawEvent]) -> None:
        """The selected raw events go back to pending and each user and provider gets a
        normalize job for all of its pending rows (as the pending sweep starts one), which
        then starts the stages that follow for its batch."""
        selected = list(queryset.values_list("pk", "user_id", "provider"))
        reset = 0
        started = 0
        for user_id, provider in sorted({(u, p) for _, u, p in selected}):
            ids = [pk for pk, u, p in selected if (u, p) == (user_id, provider)]
            reset += raw_events_reset(user_id=user_id, providers=[provider], ids=ids)
            kind = normalize_kind(provider)
            job = enqueue(
                kind,
                user=user_id,
                payload={"only_batch": False},
                dedupe_key=f"{kind}:sweep:{user_id}",
            )
            started += 0 if getattr(job, "deduplicated", False) else 1
        self.message_user(
            request,
            f"{reset} raw event(s) back to pending; {started} normalize job(s) started.",
            messages.SUCCESS,
        )


@admin.register(Interaction)
class InteractionAdmin(OwnRowsMixin, admin.ModelAdmin):
    """What normalization made of the raw events; read-only."""

    list_display = ("occurred_at", "kind", "subject_display", "direction", "source", "user")
    list_filter = ("kind", "source")
    list_select_related = ("user",)
    search_fields = ("subject", "thread_id", "source_id")
    search_help_text = "Subject, an e-mail address (of any participant) or a thread id"
    show_full_result_count = False
    list_per_page = 50
    ordering = ("-occurred_at", "-id")
    raw_id_fields = ("user",)
    fields = (
        "id",
        "user",
        "kind",
        "source",
        "source_id",
        "occurred_at",
        "occurred_at_estimated",
        "subject",
        "direction",
        "thread_id",
        "raw_event_link",
        "contacts_links",
        "body_text",
        "metadata_pretty",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Interaction], search_term: str
    ) -> tuple[QuerySet[Interaction], bool]:
        term = search_term.strip()
        if "@" in term and " " not in term:
            # Participants as parsed are in the metadata (from, to, cc, attendees, ...).
            return queryset.filter(metadata__icontains=term.lower()), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="subject")
    def subject_display(self, interaction: Interaction) -> str:
        return interaction.subject[:100] or "(no subject)"

    @admin.display(description="raw event")
    def raw_event_link(self, interaction: Interaction) -> str:
        found = RawEvent.objects.filter(
            user_id=interaction.user_id,
            provider=interaction.source,
            source_id=interaction.source_id,
        ).values_list("pk", "status")
        if not found:
            return "-"
        pk, status = found[0]
        url = reverse("admin:jobs_rawevent_change", args=[pk])
        return format_html('<a href="{}">raw event #{}</a> ({})', url, pk, status)

    @admin.display(description="contacts")
    def contacts_links(self, interaction: Interaction) -> str:
        """The contacts this interaction was resolved to, when the contacts app is installed
        (jobs never imports it: the model is looked up by name)."""
        if not apps.is_installed("contacts"):
            return "-"
        participant = apps.get_model("contacts", "InteractionParticipant")
        rows = (
            participant.objects.filter(user_id=interaction.user_id, interaction=interaction)
            .select_related("contact")
            .order_by("role", "contact_id")
        )
        links = [
            (
                reverse("admin:contacts_contact_change", args=[p.contact_id]),
                p.contact.display_name or p.contact.primary_email,
                p.role,
            )
            for p in rows
        ]
        if not links:
            return "-"
        return format_html_join(", ", '<a href="{}">{}</a> ({})', links)

    @admin.display(description="metadata")
    def metadata_pretty(self, interaction: Interaction) -> str:
        return format_html(
            "<pre>{}</pre>", json.dumps(interaction.metadata, indent=2, sort_keys=True)
        )


# Registers GoogleAccountAdmin.
from jobs.google import admin as _google_admin  # noqa: E402, F401
