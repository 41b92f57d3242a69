"""Operator's view of connected Google accounts: status and scopes, never a token."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from jobs.config import get_config
from jobs.google.accounts import google_account_disconnect
from jobs.google.push import push_health_of_rows
from jobs.models import GoogleAccount, GoogleAccountStatus, Provider, PushChannel, SyncState
from jobs.models.google_account import TOKEN_FIELDS


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
class GoogleAccountAdmin(admin.ModelAdmin):
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
    inlines = (PushChannelInline,)
    search_fields = ("email", "user__username", "user__email")
    ordering = ("email",)
    actions = ("disconnect_accounts",)
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


@admin.register(SyncState)
class SyncStateAdmin(admin.ModelAdmin):
    """Where each account's syncs stand, and the items they skip because they failed."""

    list_display = (
        "account",
        "provider",
        "resource_id",
        "cursor_set",
        "pending_count",
        "failure_count",
        "backfill_until",
        "backfill_done_at",
        "last_synced_at",
    )
    list_filter = ("provider",)
    list_select_related = ("account",)
    search_fields = ("account__email", "resource_id")
    ordering = ("account__email", "provider", "resource_id")
    readonly_fields = [field.name for field in SyncState._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="cursor", boolean=True)
    def cursor_set(self, state: SyncState) -> bool:
        return bool(state.cursor)

    @admin.display(description="pending ids")
    def pending_count(self, state: SyncState) -> int:
        return len(state.pending_ids or ())

    @admin.display(description="failed items")
    def failure_count(self, state: SyncState) -> int:
        return len(state.failures or {})


@admin.register(PushChannel)
class PushChannelAdmin(admin.ModelAdmin):
    """Every Gmail watch and calendar channel: what arrived, when it expires; no token."""

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
