"""OAuth 2.0 endpoints: consent (auto-approved), token exchange and refresh, revocation."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl, unquote_plus, urlencode

from google_emulator import errors
from google_emulator.routing import Call, Reply, Route, json_reply

_CONSENT_REQUIRED = ("client_id", "redirect_uri", "response_type", "scope")


def consent(call: Call) -> Reply:
    """Approve at once for the login_hint account (or the default one without a hint), as a user
    signing in and clicking "Allow" would.

    Redirects to redirect_uri with code and state, so a browser-less demo can run the flow.
    """
    params = call.params
    missing = [name for name in _CONSENT_REQUIRED if not params.get(name)]
    if missing or params.get("response_type") != "code":
        detail = (
            f"Missing required parameter: {missing[0]}" if missing else "Unsupported response_type"
        )
        return Reply(
            400, f"Error 400: invalid_request\n{detail}\n".encode(), "text/plain; charset=utf-8"
        )
    accounts = call.emulator.accounts
    hint = (params.get("login_hint") or "").strip()
    # The user signs in as the account login_hint names; without a hint, as the first account
    # in the chooser. A hint naming no served account is an error, never another account.
    mailbox = accounts.find(hint) if hint else None
    if hint and mailbox is None:
        detail = f"Error 400: no account {hint} on this emulator (serving: "
        detail += ", ".join(accounts.emails()) + ")\n"
        return Reply(400, detail.encode(), "text/plain; charset=utf-8")
    if mailbox is None:
        try:
            mailbox = accounts.get()
        except KeyError:
            return Reply(
                400, b"Error 400: no account to sign in with\n", "text/plain; charset=utf-8"
            )
    redirect_uri = params.get("redirect_uri") or ""
    code = accounts.issue_code(
        mailbox.email,
        client_id=params.get("client_id") or "",
        redirect_uri=redirect_uri,
        scope=params.get("scope") or "",
        offline=params.get("access_type") == "offline",
        code_challenge=params.get("code_challenge"),
        challenge_method=params.get("code_challenge_method") or "plain",
    )
    answer = {"state": params.get("state"), "code": code, "scope": params.get("scope")}
    query = urlencode({key: value for key, value in answer.items() if value is not None})
    separator = "&" if "?" in redirect_uri else "?"
    return Reply(
        302, b"", "text/html; charset=UTF-8", {"Location": f"{redirect_uri}{separator}{query}"}
    )


def token(call: Call) -> Reply:
    form = {**_basic_auth(call), **dict(parse_qsl(call.body.decode("utf-8", "replace")))}
    grant_type = form.get("grant_type", "")
    accounts = call.emulator.accounts
    if grant_type == "authorization_code":
        return json_reply(accounts.exchange_code(form))
    if grant_type == "refresh_token":
        return json_reply(accounts.refresh(form))
    raise errors.OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")


def _basic_auth(call: Call) -> dict[str, str]:
    """Client credentials sent as HTTP Basic (client_secret_basic, requests-oauthlib's default)."""
    scheme, _, encoded = call.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return {}
    try:
        decoded = base64.b64decode(encoded).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise errors.OAuthError(401, "invalid_client", "Unauthorized") from None
    client_id, _, client_secret = decoded.partition(":")
    return {"client_id": unquote_plus(client_id), "client_secret": unquote_plus(client_secret)}


def revoke(call: Call) -> Reply:
    form = dict(parse_qsl(call.body.decode("utf-8", "replace")))
    call.emulator.accounts.revoke(call.params.get("token") or form.get("token", ""))
    return json_reply({})


ROUTES = [
    Route("oauth.consent", "GET", "/o/oauth2/auth", consent, "oauth"),
    Route("oauth.consent", "GET", "/o/oauth2/v2/auth", consent, "oauth"),
    Route("oauth.token", "POST", "/token", token, "oauth"),
    Route("oauth.revoke", "POST", "/revoke", revoke, "oauth"),
]
