"""Operator's view of connected Google accounts: status and scopes, never a token."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs.google.accounts import google_account_disconnect
from jobs.models import GoogleAccount, GoogleAccountStatus, SyncState
from jobs.models.google_account import TOKEN_FIELDS


@admin.register(GoogleAccount)
class GoogleAccountAdmin(admin.ModelAdmin):
    list_display = ("email", "user", "status", "scopes_display", "token_set", "updated_at")
    list_filter = ("status",)
    list_select_related = ("user",)
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
        "last_error",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

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
