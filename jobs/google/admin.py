"""Operator's view of connected Google accounts: status and scopes, never a token."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs.google.accounts import google_account_disconnect
from jobs.models import GoogleAccount, GoogleAccountStatus
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
