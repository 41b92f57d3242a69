"""Operator's view of connected Google accounts: status, scopes and sync state, never a token."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from jobs.admin_base import OwnRowsMixin, ReadOnlyPageMixin
from jobs.config import get_config
from jobs.google.accounts import google_account_disconnect
from jobs.google.push import push_health_of_rows
from jobs.models import GoogleAccount, GoogleAccountStatus, Provider, PushChannel, SyncState
from jobs.models.google_account import TOKEN_FIELDS
from jobs.sync.enqueue import sync_enqueue


class SyncStateColumns:
    """The columns a sync state is read by, in its changelist and on its account's page."""

    @admin.display(description="cursor", boolean=True)
    def cursor_set(self, state: SyncState) -> bool:
        return bool(state.cursor)

    @admin.display(description="pending ids")
    def pending_count(self, state: SyncState) -> int:
        return len(state.pending_ids or ())

    @admin.display(description="pass fetched / listed")
    def pass_progress(self, state: SyncState) -> str:
        return f"{state.pass_fetched} / {state.pass_listed}"

    @admin.display(description="failed items")
    def failure_count(self, state: SyncState) -> int:
        return len(state.failures or {})


class SyncStateInline(SyncStateColumns, admin.TabularInline):
    """Where the account's syncs stand, one row per provider and calendar (read-only)."""

    model = SyncState
    fields = (
        "provider",
        "resource_id",
        "cursor_set",
        "pending_count",
        "pass_progress",
        "failure_count",
        "last_synced_at",
        "last_full_sync_at",
        "backfill_until",
        "backfill_done_at",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("provider", "resource_id")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PushChannelInline(admin.TabularInline):
    """The account's Gmail watch and calendar channels, never their tokens."""

    model = PushChannel
    extra = 0
    can_delete = False
    fields = (
        "provider",
        "resource_id",
        "status",
        "renewed_at",
        "expires_at",
        "notified_at",
        "notifications",
        "unannounced_at",
        "last_error",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(GoogleAccount)
class GoogleAccountAdmin(OwnRowsMixin, ReadOnlyPageMixin, admin.ModelAdmin):
    list_display = (
        "email",
        "user",
        "status",
        "scopes_display",
        "token_set",
        "gmail_push",
        "calendar_push",
        "updated_at",
    )
    list_filter = ("status",)
    list_select_related = ("user",)
    search_fields = ("email", "user__username", "user__email")
    ordering = ("email",)
    actions = ("sync_now", "disconnect_accounts")
    inlines = (SyncStateInline, PushChannelInline)
    # Ciphertexts stay out of every form and page; "token set" says all an operator needs.
    exclude = TOKEN_FIELDS
    fields = (
        "user",
        "email",
        "status",
        "scopes",
        "addresses",
        "token_set",
        "access_token_expires_at",
        "gmail_push",
        "calendar_push",
        "last_error",
        "created_at",
        "updated_at",
        "pipeline_links",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[GoogleAccount]:
        # Push health comes from the prefetched rows: two queries for the whole page.
        return super().get_queryset(request).prefetch_related("push_channels")

    def _push(self, account: GoogleAccount, provider: str) -> str:
        health = push_health_of_rows(
            account.push_channels.all(), config=get_config(), now=timezone.now()
        )
        found = health[provider]
        if found.notified_at is None:
            return str(found)
        return f"{found} (last notification {found.notified_at:%Y-%m-%d %H:%M})"

    @admin.display(description="Gmail push")
    def gmail_push(self, account: GoogleAccount) -> str:
        return self._push(account, Provider.GMAIL)

    @admin.display(description="Calendar push")
    def calendar_push(self, account: GoogleAccount) -> str:
        return self._push(account, Provider.CALENDAR)

    @admin.display(description="scopes")
    def scopes_display(self, account: GoogleAccount) -> str:
        return ", ".join(scope.rsplit("/", 1)[-1] for scope in account.scopes or ())

    @admin.display(description="token set", boolean=True)
    def token_set(self, account: GoogleAccount) -> bool:
        return account.has_refresh_token

    @admin.display(description="pipeline")
    def pipeline_links(self, account: GoogleAccount) -> str:
        return format_html(
            '<a href="{}?account__id__exact={}">sync states</a> · '
            '<a href="{}?account__id__exact={}">raw events</a> · <a href="{}">pipeline page</a>',
            reverse("admin:jobs_syncstate_changelist"),
            account.pk,
            reverse("admin:jobs_rawevent_changelist"),
            account.pk,
            reverse("admin:jobs_job_pipeline"),
        )

    @admin.action(description="Sync now (Gmail and Calendar)", permissions=["change"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[GoogleAccount]) -> None:
        """A sync per provider for each selected active account; an account whose sync is
        already queued or running keeps that one (its lane holds one)."""
        active = list(queryset.filter(status=GoogleAccountStatus.ACTIVE))
        started = sync_enqueue(accounts=active)
        created = sum(1 for item in started if item.created)
        self.message_user(
            request,
            f"{created} sync job(s) started for {len(active)} account(s); "
            f"{len(started) - created} already queued or running.",
            messages.SUCCESS,
        )
        skipped = queryset.count() - len(active)
        if skipped:
            self.message_user(
                request, f"{skipped} account(s) skipped: not active.", messages.WARNING
            )

    @admin.action(
        description="Disconnect selected accounts (revoke at Google, forget tokens)",
        permissions=["change"],
    )
    def disconnect_accounts(self, request: HttpRequest, queryset: QuerySet[GoogleAccount]) -> None:
        done = 0
        for account in queryset.exclude(status=GoogleAccountStatus.REVOKED):
            google_account_disconnect(account=account)
            done += 1
        self.message_user(request, f"{done} account(s) disconnected.", messages.SUCCESS)

    def delete_model(self, request: HttpRequest, obj: GoogleAccount) -> None:
        """Deleting an account revokes its grant at Google first, as disconnecting does."""
        if obj.status != GoogleAccountStatus.REVOKED:
            google_account_disconnect(account=obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[GoogleAccount]) -> None:
        """The changelist's "delete selected": every grant revoked first, as above."""
        for account in queryset.exclude(status=GoogleAccountStatus.REVOKED):
            google_account_disconnect(account=account)
        super().delete_queryset(request, queryset)


@admin.register(SyncState)
class SyncStateAdmin(OwnRowsMixin, SyncStateColumns, admin.ModelAdmin):
    """Where each account's syncs stand, and the items they skip because they failed."""

    user_path = "account__user_id"

    list_display = (
        "account",
        "provider",
        "resource_id",
        "cursor_set",
        "pending_count",
        "pass_progress",
        "failure_count",
        "backfill_until",
        "backfill_done_at",
        "last_synced_at",
    )
    # only the accounts of the rows this user may see (a staff member: their own)
    list_filter = ("provider", ("account", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("account",)
    search_fields = ("account__email", "resource_id")
    ordering = ("account__email", "provider", "resource_id")
    readonly_fields = [field.name for field in SyncState._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(PushChannel)
class PushChannelAdmin(OwnRowsMixin, admin.ModelAdmin):
    """Every Gmail watch and calendar channel: what arrived, when it expires; no token."""

    user_path = "account__user_id"

    list_display = (
        "account",
        "provider",
        "resource_id",
        "status",
        "expires_at",
        "notified_at",
        "notifications",
        "unannounced_at",
        "last_error",
    )
    list_filter = ("provider", "status")
    list_select_related = ("account",)
    search_fields = ("account__email", "resource_id", "channel_id")
    ordering = ("account__email", "provider", "resource_id")
    exclude = ("token_encrypted",)

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [f.name for f in PushChannel._meta.fields if f.name != "token_encrypted"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
