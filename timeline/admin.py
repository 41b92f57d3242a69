"""Timeline admin: events are written by the pipeline, so the admin only reads them.

Superusers see every user's events; any other staff member only their own (as in the contacts
admin).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from jobs.admin_base import OwnRowsMixin
from timeline.models import TimelineEvent


@admin.register(TimelineEvent)
class TimelineEventAdmin(OwnRowsMixin, admin.ModelAdmin):
    list_display = ("occurred_at", "event_type", "title", "contact", "user")
    list_filter = ("event_type",)
    search_fields = ("title", "contact__display_name", "contact__primary_email")
    list_select_related = ("contact", "user")
    ordering = ("-occurred_at", "-id")
    date_hierarchy = None
    show_full_result_count = False
    raw_id_fields = ("contact", "interaction", "user")
    readonly_fields = (
        "user",
        "contact",
        "interaction",
        "event_type",
        "occurred_at",
        "title",
        "data",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
