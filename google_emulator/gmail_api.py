"""Gmail v1 handlers: profile, messages.list/get, history.list, labels.list, sendAs.list,
and watch/stop (push notifications, google_emulator.push)."""

from __future__ import annotations

import json

from google_emulator import errors
from google_emulator.params import Params, decode_token, encode_token
from google_emulator.query import compile_query
from google_emulator.routing import Call, Reply, Route, json_reply
from google_emulator.state import SYSTEM_LABELS, HistoryExpired, Mailbox, StoredMessage
from jobs.sync import convert

_FORMATS = ("full", "metadata", "minimal", "raw")
_HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")


def _mailbox(call: Call) -> Mailbox:
    """The mailbox userId names: "me" or the caller's own address, never another account's
    (Google answers 403 to a token used for another user)."""
    assert call.mailbox is not None, "the server authenticates every gmail route"
    user_id = call.args["userId"]
    if user_id == "me" or user_id.lower() == call.mailbox.email.lower():
        return call.mailbox
    raise errors.ApiError(403, "forbidden", f"Delegation denied for {call.mailbox.email}")


def get_profile(call: Call) -> Reply:
    return json_reply(_mailbox(call).profile())


def list_messages(call: Call) -> Reply:
    mailbox = _mailbox(call)
    params = call.params
    max_results = params.get_int("maxResults", 100, 500)
    matches = _matching(mailbox, params)
    start = _page_start(matches, params.get("pageToken"))
    page = matches[start : start + max_results]
    reply: dict = {"resultSizeEstimate": len(matches)}
    if page:
        reply["messages"] = [message.ref() for message in page]
    if start + max_results < len(matches):
        last = page[-1]
        reply["nextPageToken"] = encode_token({"d": last.internal_date_ms, "i": last.id})
    return json_reply(reply)


def _matching(mailbox: Mailbox, params: Params) -> list[StoredMessage]:
    """Messages passing labelIds (all of them), the SPAM/TRASH rule and q, newest first."""
    label_ids = params.get_list("labelIds")
    query = compile_query(params.get("q") or "", mailbox.labels())
    predicates = list(query.predicates)
    if label_ids:
        predicates.append(lambda m: all(label in m.label_ids for label in label_ids))
    shown = params.get_bool("includeSpamTrash") or query.spam_trash
    if not shown and not {"SPAM", "TRASH"} & set(label_ids):
        predicates.append(lambda m: "SPAM" not in m.label_ids and "TRASH" not in m.label_ids)
    return [m for m in mailbox.newest_first() if all(p(m) for p in predicates)]


def _page_start(matches: list[StoredMessage], token: str | None) -> int:
    """Index of the first message after the page token's cursor (stable as new mail arrives)."""
    if not token:
        return 0
    cursor = decode_token(token)
    key = (cursor.get("d", 0), str(cursor.get("i", "")))
    return next(
        (i for i, m in enumerate(matches) if (m.internal_date_ms, m.id) < key), len(matches)
    )


def get_message(call: Call) -> Reply:
    mailbox = _mailbox(call)
    message_id = call.args["id"]
    fmt = call.params.get("format") or "full"
    if fmt not in _FORMATS:
        raise errors.invalid_argument(f"Invalid value at 'format' ({fmt})")
    if not all(ch in "0123456789abcdef" for ch in message_id):
        raise errors.invalid_argument("Invalid id value")
    try:
        message = mailbox.get(message_id)
    except KeyError:
        raise errors.not_found() from None
    headers = call.params.get_list("metadataHeaders") or None
    return json_reply(convert.format_message(message.resource(), message.raw, fmt, headers))


def list_history(call: Call) -> Reply:
    mailbox = _mailbox(call)
    params = call.params
    start = params.get("startHistoryId")
    if not start or not start.isdigit():
        raise errors.invalid_argument("Invalid startHistoryId")
    types = params.get_list("historyTypes")
    unknown = [kind for kind in types if kind not in _HISTORY_TYPES]
    if unknown:
        raise errors.invalid_argument(f"Invalid value at 'history_types' ({unknown[0]})")
    label_id = params.get("labelId")
    max_results = params.get_int("maxResults", 100, 500)
    try:
        records = mailbox.history_since(int(start))
    except HistoryExpired:
        raise errors.not_found() from None
    token = params.get("pageToken")
    after = decode_token(token).get("a", 0) if token else 0
    selected = [
        record
        for record in records
        if record.id > after
        and (not types or record.kind in types)
        and (not label_id or label_id in record.message["labelIds"] or label_id in record.label_ids)
    ]
    page = selected[:max_results]
    reply: dict = {"historyId": str(mailbox.history_id)}
    if page:
        reply["history"] = [record.resource() for record in page]
    if len(selected) > max_results:
        reply["nextPageToken"] = encode_token({"a": page[-1].id})
    return json_reply(reply)


def list_labels(call: Call) -> Reply:
    labels = [_label(label_id, name) for label_id, name in _mailbox(call).labels().items()]
    return json_reply({"labels": labels})


def _label(label_id: str, name: str) -> dict:
    if label_id in SYSTEM_LABELS:
        return {"id": label_id, "name": name, "type": "system"}
    return {
        "id": label_id,
        "name": name,
        "type": "user",
        "messageListVisibility": "show",
        "labelListVisibility": "labelShow",
    }


def list_send_as(call: Call) -> Reply:
    mailbox = _mailbox(call)
    primary = {
        "sendAsEmail": mailbox.email,
        "displayName": "",
        "replyToAddress": "",
        "signature": "",
        "isPrimary": True,
        "isDefault": True,
    }
    aliases = [
        {
            "sendAsEmail": alias,
            "displayName": "",
            "replyToAddress": "",
            "signature": "",
            "isDefault": False,
            "treatAsAlias": True,
            "verificationStatus": "accepted",
        }
        for alias in mailbox.aliases
    ]
    return json_reply({"sendAs": [primary, *aliases]})


def _json_body(call: Call) -> dict:
    try:
        body = json.loads(call.body or b"{}")
    except ValueError:
        raise errors.invalid_argument("Invalid JSON payload received.") from None
    if not isinstance(body, dict):
        raise errors.invalid_argument("Invalid JSON payload received.")
    return body


def watch(call: Call) -> Reply:
    """users.watch: publish the mailbox's changes to a Pub/Sub topic for 7 days."""
    mailbox = _mailbox(call)
    reply = call.emulator.push.gmail_watch(mailbox.email, mailbox.history_id, _json_body(call))
    return json_reply(reply)


def stop(call: Call) -> Reply:
    """users.stop: no more notifications for this mailbox (answers 204 with no body)."""
    call.emulator.push.gmail_stop(_mailbox(call).email)
    return Reply(204, b"")


_USER = "/gmail/v1/users/{userId}"
ROUTES = [
    Route("gmail.users.getProfile", "GET", f"{_USER}/profile", get_profile, "gmail", 1),
    Route("gmail.users.messages.list", "GET", f"{_USER}/messages", list_messages, "gmail", 5),
    Route("gmail.users.messages.get", "GET", f"{_USER}/messages/{{id}}", get_message, "gmail", 5),
    Route("gmail.users.history.list", "GET", f"{_USER}/history", list_history, "gmail", 2),
    Route("gmail.users.labels.list", "GET", f"{_USER}/labels", list_labels, "gmail", 1),
    Route(
        "gmail.users.settings.sendAs.list",
        "GET",
        f"{_USER}/settings/sendAs",
        list_send_as,
        "gmail",
        1,
    ),
    Route("gmail.users.watch", "POST", f"{_USER}/watch", watch, "gmail", 100),
    Route("gmail.users.stop", "POST", f"{_USER}/stop", stop, "gmail", 50),
]
