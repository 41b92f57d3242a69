"""Shared admin pieces: change pages that only show a machine-written row."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed


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
