"""Connect a Google account (OAuth consent, offline access), list and disconnect them."""

from __future__ import annotations

import logging
import os
from typing import Any, cast
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_GET, require_POST
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import OAuth2Error

from jobs.config import get_config
from jobs.google.accounts import google_account_disconnect
from jobs.google.credentials import auth_uri, token_uri
from jobs.google.errors import TRANSPORT_ERRORS
from jobs.google.oauth import SCOPES, GoogleUnreachable, google_account_connect_oauth
from jobs.models import GoogleAccount, GoogleAccountStatus

logger = logging.getLogger(__name__)
# requests-oauthlib logs the whole token exchange, tokens included, at DEBUG: never let it.
for _name in ("requests_oauthlib", "oauthlib"):
    logging.getLogger(_name).setLevel(max(logging.getLogger(_name).level, logging.INFO))

SESSION_KEY = "google_oauth"


def _user(request: HttpRequest) -> AbstractBaseUser:
    # Every view is login_required: the user is a real one.
    return cast(AbstractBaseUser, request.user)


def _redirect_uri(request: HttpRequest) -> str:
    return settings.GOOGLE_REDIRECT_URI or request.build_absolute_uri(reverse("google:callback"))


def _allow_plain_http() -> None:
    """Let oauthlib talk to the emulator over http://127.0.0.1.

    oauthlib refuses non-https endpoints unless OAUTHLIB_INSECURE_TRANSPORT is set. That is only
    acceptable for the local emulator or a DEBUG setup, never against Google in production.
    """
    uris = (auth_uri(), token_uri())
    plain = any(uri.startswith("http://") for uri in uris)
    if plain and (settings.DEBUG or settings.GOOGLE_API_ROOT):
        os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")


def _flow(request: HttpRequest, **kwargs: Any) -> Flow:
    _allow_plain_http()
    # Google may grant fewer scopes than asked (granular consent); keep what was granted
    # instead of failing the whole exchange.
    os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
    redirect_uri = _redirect_uri(request)
    config = {
        "web": {
            "client_id": settings.GOOGLE_CLIENT_ID,
            "client_secret": settings.GOOGLE_CLIENT_SECRET,
            "auth_uri": auth_uri(),
            "token_uri": token_uri(),
            "redirect_uris": [redirect_uri],
        }
    }
    return Flow.from_client_config(config, scopes=SCOPES, redirect_uri=redirect_uri, **kwargs)


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The user's connected accounts, a connect link and a disconnect button for each."""
    accounts = GoogleAccount.objects.filter(user_id=_user(request).pk).order_by("email")
    csrf = get_token(request)
    connect_url = reverse("google:connect")
    rows = format_html_join(
        "",
        '<li>{} &mdash; {} {}<form method="post" action="{}" style="display:inline">'
        '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
        '<button type="submit">Disconnect</button></form></li>',
        (
            (
                a.email,
                a.get_status_display(),
                _reconnect_link(connect_url, a),
                reverse("google:disconnect", args=[a.pk]),
                csrf,
            )
            for a in accounts
        ),
    )
    notes = format_html_join("", "<p>{}</p>", ((m,) for m in messages.get_messages(request)))
    body = format_html(
        "<!doctype html><title>Google accounts</title><h1>Google accounts</h1>{}<ul>{}</ul>"
        '<p><a href="{}">Connect a Google account</a></p>',
        notes,
        rows,
        connect_url,
    )
    return HttpResponse(body)


def _reconnect_link(connect_url: str, account: GoogleAccount) -> str:
    """A link to (re)connect an account that does not sync, asking Google for that address."""
    if account.status == GoogleAccountStatus.ACTIVE:
        return ""
    return format_html(
        '<a href="{}?{}">Connect</a> ', connect_url, urlencode({"email": account.email})
    )


@login_required
@require_GET
def connect(request: HttpRequest) -> HttpResponse:
    """Send the user to Google's consent screen (offline access, consent prompt for a refresh
    token), remembering state and the PKCE verifier in the session. `?email=` asks Google for
    that account (login_hint)."""
    if not settings.GOOGLE_CLIENT_ID:
        return HttpResponse(
            "Google sign-in is not configured: set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET.",
            status=503,
            content_type="text/plain",
        )
    flow = _flow(request)
    hint = {"login_hint": email} if (email := request.GET.get("email", "").strip()) else {}
    url, state = flow.authorization_url(
        access_type="offline", prompt="consent", include_granted_scopes="true", **hint
    )
    request.session[SESSION_KEY] = {"state": state, "code_verifier": flow.code_verifier}
    return redirect(url)


def _bad_request(message: str) -> HttpResponseBadRequest:
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


@login_required
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    """Google's redirect back: check state, exchange the code, store the account, start syncing."""
    pending = request.session.pop(SESSION_KEY, None)
    state = request.GET.get("state")
    if not state:
        return _bad_request("Missing OAuth state: start again from the connect page.")
    if not pending or state != pending.get("state"):
        return _bad_request("OAuth state does not match this session: start again.")
    if request.GET.get("error"):
        return _bad_request(f"Google sign-in did not complete: {request.GET['error']}.")
    code = request.GET.get("code")
    if not code:
        return _bad_request("Google returned no authorization code: start again.")
    flow = _flow(request, state=state, code_verifier=pending.get("code_verifier"))
    try:
        flow.fetch_token(code=code, timeout=get_config().google_request_timeout_s)
    except (OAuth2Error, ValueError) as exc:
        # oauthlib's message names the OAuth error, never the code or tokens.
        logger.warning("Google token exchange failed: %s", type(exc).__name__)
        return _bad_request(f"Google refused the authorization code ({_oauth_error(exc)}).")
    except TRANSPORT_ERRORS as exc:
        logger.warning("Google token endpoint unreachable: %s", type(exc).__name__)
        return HttpResponse("Google could not be reached; try again.", status=502)
    credentials = flow.credentials
    if not credentials.refresh_token:
        return _bad_request("Google returned no refresh token: remove the app's access and retry.")
    try:
        connected = google_account_connect_oauth(
            user=_user(request),
            credentials=credentials,
            scopes=credentials.granted_scopes or flow.oauth2session.scope or SCOPES,
        )
    except GoogleUnreachable:
        return HttpResponse("Google could not be reached; try again.", status=502)
    started = any(item.created for item in connected.syncs)
    messages.success(
        request,
        f"Connected {connected.account.email}."
        + (" The first sync has started." if started else " A sync is already running."),
    )
    return redirect("google:index")


def _oauth_error(exc: Exception) -> str:
    return getattr(exc, "error", None) or type(exc).__name__


@login_required
@require_POST
def disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke the grant (best effort) and forget the tokens of one of the user's accounts."""
    account = get_object_or_404(GoogleAccount, pk=pk, user_id=_user(request).pk)
    google_account_disconnect(account=account)
    messages.success(request, f"Disconnected {account.email}.")
    return redirect("google:index")
