"""Admin for search: the interaction search page and the embedding sets (model switch status).

The search page is the changelist of a proxy model (search.models.InteractionSearch), so it is
listed in the admin index. Staff only (the admin site's own check); a superuser searches any
user's interactions, any other staff member only their own.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from search.models import EmbeddingSet, InteractionSearch
from search.selectors import (
    HIGHLIGHT_START,
    HIGHLIGHT_STOP,
    MAX_LIMIT,
    MODES,
    ContactNotFound,
    SearchError,
    contact_find,
    interaction_search,
)


class SearchForm(forms.Form):
    user = forms.ModelChoiceField(queryset=get_user_model().objects.none(), required=True)
    query = forms.CharField(max_length=500)
    contact = forms.CharField(
        required=False, max_length=320, help_text="e-mail address or contact id"
    )
    since = forms.DateField(required=False, help_text="YYYY-MM-DD")
    mode = forms.ChoiceField(choices=[(m, m) for m in MODES], initial="hybrid")
    limit = forms.IntegerField(min_value=1, max_value=MAX_LIMIT, initial=10)

    def __init__(self, *args: Any, request_user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        users = get_user_model().objects.order_by("pk")
        if not request_user.is_superuser:
            users = users.filter(pk=request_user.pk)
        self.fields["user"].queryset = users  # type: ignore[attr-defined]


def highlighted(snippet: str) -> SafeString:
    """The snippet escaped, its matching words (between « and ») in <mark>."""
    html = str(escape(snippet))
    html = html.replace(escape(HIGHLIGHT_START), "<mark>").replace(
        escape(HIGHLIGHT_STOP), "</mark>"
    )
    if html.count("<mark>") != html.count("</mark>"):
        html = str(escape(snippet))
    return mark_safe(html)


def interaction_url(interaction_id: int) -> str | None:
    """The interaction's admin page, where the host project has one."""
    try:
        return reverse("admin:jobs_interaction_change", args=[interaction_id])
    except NoReverseMatch:
        return None


@admin.register(InteractionSearch)
class InteractionSearchAdmin(admin.ModelAdmin):
    """The search page: pick a user, type a query, see the fused results with their scores."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        from django.urls import path

        info = (self.model._meta.app_label, self.model._meta.model_name)
        return [
            path(
                "",
                self.admin_site.admin_view(self.changelist_view),
                name="{}_{}_changelist".format(*info),
            )
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        form = SearchForm(request.GET or None, request_user=request.user)
        results: list[dict[str, Any]] = []
        notes: list[str] = []
        error = ""
        searched = False
        if request.GET and form.is_valid():
            data = form.cleaned_data
            user = data["user"]
            try:
                contact = (
                    contact_find(user=user, identifier=data["contact"]) if data["contact"] else None
                )
                found = interaction_search(
                    user=user,
                    query=data["query"],
                    limit=data["limit"],
                    contact=contact,
                    since=data["since"] if isinstance(data["since"], date) else None,
                    mode=data["mode"],
                )
            except (ContactNotFound, SearchError) as exc:
                error = str(exc)
            else:
                searched = True
                notes = found.notes
                results = [
                    {
                        "hit": hit,
                        "url": interaction_url(hit.interaction_id),
                        "snippet": highlighted(hit.snippet),
                    }
                    for hit in found
                ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Interaction search",
            "form": form,
            "results": results,
            "notes": notes,
            "error": error,
            "searched": searched,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/search/interaction_search.html", context)


@admin.register(EmbeddingSet)
class EmbeddingSetAdmin(admin.ModelAdmin):
    """Read-only: each user's embeddings per model, building or complete (a model switch)."""

    list_display = ("user", "model", "dims", "status", "completed_at", "created_at")
    list_filter = ("status", "model")
    list_select_related = ("user",)
    readonly_fields = (
        "user",
        "model",
        "dims",
        "provider_settings",
        "status",
        "completed_at",
        "created_at",
        "updated_at",
    )

    def get_queryset(self, request: HttpRequest) -> Any:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(user_id=request.user.pk)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
