"""Admin for contacts: search, identities, rollups, timeline and interactions; merges with a
confirmation page; merge suggestions side by side with accept / reject; undoable merges.

Superusers (operators) see every user's rows; any other staff member sees only their own
contacts, suggestions and merges.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from contacts.models import (
    Contact,
    ContactIdentity,
    ContactMerge,
    InteractionParticipant,
    MergeSuggestion,
)
from contacts.rollups import ROLLUP_FIELDS
from contacts.services.merge import (
    DISPLAY_NAMES,
    MergeError,
    contact_merge,
    contact_unmerge,
    merge_suggestion_accept,
    merge_suggestion_reject,
)
from jobs.admin_base import OwnRowsMixin, ReadOnlyPageMixin

RECENT = 10
# The rollups as computed (the recent interactions have a display of their own), and when.
ADMIN_ROLLUP_FIELDS: tuple[str, ...] = (
    *(name for name in ROLLUP_FIELDS if name != "recent_interactions"),
    "rollups_updated_at",
)
_CONTACT_FIELDS: tuple[str, ...] = (
    "display_name",
    "primary_email",
    "company_domain",
    "user",
    "created_from",
    "merged_into",
    *ADMIN_ROLLUP_FIELDS,
    "recent_interactions_display",
    "latest_timeline",
    "latest_interactions",
)


class MergedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "live"), ("merged", "merged away")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "live":
            return queryset.filter(merged_into__isnull=True)
        if self.value() == "merged":
            return queryset.filter(merged_into__isnull=False)
        return queryset


class IdentityInline(admin.TabularInline):
    model = ContactIdentity
    fields = ("kind", "value", "key", "names", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Contact)
class ContactAdmin(OwnRowsMixin, admin.ModelAdmin):
    list_display = (
        "display_name",
        "primary_email",
        "company_domain",
        "last_interaction_at",
        "interaction_count",
        "interactions_90d",
        "merged_into",
        "user",
    )
    list_filter = (MergedFilter,)
    list_select_related = ("user", "merged_into")
    search_fields = ("display_name", "primary_email", "company_domain", "identities__value")
    search_help_text = "Name, e-mail address or domain"
    ordering = ("-last_interaction_at", "-id")
    list_per_page = 50
    show_full_result_count = False
    inlines = (IdentityInline,)
    actions = ("merge_into",)
    fields = _CONTACT_FIELDS
    # machine-written: everything but the display name
    readonly_fields = tuple(f for f in _CONTACT_FIELDS if f != "display_name")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="recent interactions (rollup)")
    def recent_interactions_display(self, contact: Contact) -> str:
        items = contact.recent_interactions or []
        if not items:
            return "-"
        return format_html_join(
            "",
            "<div>{} {} {}</div>",
            (
                (item.get("occurred_at", ""), item.get("kind", ""), item.get("subject", ""))
                for item in items
                if isinstance(item, dict)
            ),
        )

    @admin.display(description=f"latest timeline events (up to {RECENT})")
    def latest_timeline(self, contact: Contact) -> str:
        events = contact.timeline_events.filter(user_id=contact.user_id).order_by(
            "-occurred_at", "-id"
        )[:RECENT]
        rows = [(e.occurred_at, e.get_event_type_display(), e.title) for e in events]
        if not rows:
            return "-"
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description=f"latest interactions (up to {RECENT})")
    def latest_interactions(self, contact: Contact) -> str:
        participations = (
            InteractionParticipant.objects.filter(user_id=contact.user_id, contact=contact)
            .select_related("interaction")
            .order_by("-occurred_at", "-id")[:RECENT]
        )
        rows = [
            (
                p.occurred_at,
                p.interaction.get_kind_display(),
                p.role + (f" ({p.response_status})" if p.response_status else ""),
                p.interaction.subject,
            )
            for p in participations
        ]
        if not rows:
            return "-"
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.action(description="Merge into…", permissions=["change"])
    def merge_into(self, request: HttpRequest, queryset: QuerySet[Contact]) -> Any:
        contacts = list(
            queryset.filter(merged_into__isnull=True).order_by("-interaction_count", "id")
        )
        if len(contacts) < 2:
            self.message_user(
                request, "Select at least two live contacts to merge.", messages.WARNING
            )
            return None
        if len({c.user_id for c in contacts}) > 1:
            self.message_user(
                request, "Contacts of different users cannot be merged.", messages.ERROR
            )
            return None
        if request.POST.get("confirm") == "yes":
            by_id = {str(c.pk): c for c in contacts}
            target = by_id.get(request.POST.get("target", ""))
            if target is None:
                self.message_user(request, "Choose the contact to merge into.", messages.ERROR)
                return None
            merged = 0
            for source in contacts:
                if source.pk == target.pk:
                    continue
                try:
                    contact_merge(user=target.user_id, source=source, target=target)
                except MergeError as exc:
                    self.message_user(request, f"{source}: {exc}", messages.ERROR)
                else:
                    merged += 1
            if merged:
                self.message_user(
                    request, f"Merged {merged} contact(s) into {target}.", messages.SUCCESS
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Merge contacts",
            "opts": self.model._meta,
            "contacts": contacts,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/contacts/contact/merge_confirm.html", context)


def _side(contact: Contact) -> str:
    return format_html(
        "<strong>{}</strong><br>{}<br>{} · {} interaction(s){}",
        contact.display_name or "-",
        contact.primary_email,
        contact.company_domain or "personal mail",
        contact.interaction_count,
        " · merged" if contact.merged_into_id else "",
    )


@admin.register(MergeSuggestion)
class MergeSuggestionAdmin(ReadOnlyPageMixin, OwnRowsMixin, admin.ModelAdmin):
    list_display = (
        "contact_a_display",
        "contact_b_display",
        "score",
        "reason",
        "status",
        "created_at",
    )
    list_filter = ("status",)
    list_select_related = ("contact_a", "contact_b")
    search_fields = (
        "contact_a__display_name",
        "contact_b__display_name",
        "contact_a__primary_email",
        "contact_b__primary_email",
    )
    ordering = ("-created_at", "-id")
    actions = ("accept", "reject")
    fields = (
        "user",
        "contact_a",
        "contact_b",
        "score",
        "reason",
        "status",
        "created_at",
        "decided_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="contact A")
    def contact_a_display(self, suggestion: MergeSuggestion) -> str:
        return _side(suggestion.contact_a)

    @admin.display(description="contact B")
    def contact_b_display(self, suggestion: MergeSuggestion) -> str:
        return _side(suggestion.contact_b)

    def _decide(self, request: HttpRequest, queryset: QuerySet, decide: Any, verb: str) -> None:
        done = 0
        for suggestion in queryset:
            try:
                decide(user=suggestion.user_id, suggestion=suggestion)
            except MergeError as exc:
                self.message_user(request, f"{suggestion}: {exc}", messages.WARNING)
            else:
                done += 1
        if done:
            self.message_user(request, f"{verb} {done} suggestion(s).", messages.SUCCESS)

    @admin.action(description="Accept (merge the pair)", permissions=["change"])
    def accept(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, merge_suggestion_accept, "Accepted")

    @admin.action(description="Reject (never suggest again)", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, merge_suggestion_reject, "Rejected")


@admin.register(ContactMerge)
class ContactMergeAdmin(ReadOnlyPageMixin, OwnRowsMixin, admin.ModelAdmin):
    list_display = ("source", "target", "moved_counts", "merged_at", "undone_at")
    list_select_related = ("source", "target")
    ordering = ("-merged_at", "-id")
    actions = ("undo",)
    fields = ("user", "source", "target", "suggestion", "moved", "merged_at", "undone_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="moved")
    def moved_counts(self, merge: ContactMerge) -> str:
        return ", ".join(
            f"{name}: {len(ids)}"
            for name, ids in sorted(merge.moved.items())
            if name != DISPLAY_NAMES
        )

    @admin.action(description="Undo the merge", permissions=["change"])
    def undo(self, request: HttpRequest, queryset: QuerySet[ContactMerge]) -> None:
        undone = 0
        for merge in queryset.order_by("-merged_at", "-id"):
            try:
                contact_unmerge(merge=merge)
            except MergeError as exc:
                self.message_user(request, f"{merge}: {exc}", messages.WARNING)
            else:
                undone += 1
        if undone:
            self.message_user(request, f"Undid {undone} merge(s).", messages.SUCCESS)
