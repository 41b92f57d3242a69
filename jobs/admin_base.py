"""Shared admin pieces: change pages that only show a machine-written row, and the scoping of
every user's rows to their owner for staff who are not superusers."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed


class OwnRowsMixin:
    """Staff who are not superusers see (and act on) only their own rows.

    Superusers operate the pipeline and see every user's rows. Everything an admin reaches goes
    through get_queryset: the changelist, its actions (only selected ids within it are acted
    on), and the object pages (another user's row "doesn't exist"). `user_path` is the lookup
    from the row to its owner's id ("account__user_id" for rows owned through an account).
    """

    user_path = "user_id"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{self.user_path: request.user.pk})


class ReadOnlyPageMixin:
    """The change page shows the row and nothing to save: no Save buttons, and a POST to it is
    refused (a stale form saved over a row the pipeline writes would undo its work).

    For admins that keep the change permission because their actions need it (retry, sync
    now); admins without actions return False from has_change_permission instead.
    """

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "POST":
            return HttpResponseNotAllowed(["GET"])
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().changeform_view(  # type: ignore[misc]
            request, object_id, form_url, extra_context
        )


class OwnAccountFilter(admin.RelatedFieldListFilter):
    """The "by account" filter of rows owned through an account: a superuser is offered every
    account, anyone else only their own (no other user's address on the page). Reads the
    accounts table, never a DISTINCT over the rows (RelatedOnlyFieldListFilter would scan a
    large raw-event table on every page)."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list:
        ordering = self.field_admin_ordering(field, request, model_admin)
        limit = None if request.user.is_superuser else Q(user_id=request.user.pk)
        return field.get_choices(include_blank=False, ordering=ordering, limit_choices_to=limit)
