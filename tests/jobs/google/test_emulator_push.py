"""The emulator's push side: users.watch/stop, events.watch/channels.stop, signed Pub/Sub
pushes, Calendar channel messages, non-blocking bounded delivery, injection (HTTP and command)."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from googleapiclient.errors import HttpError

from google_emulator.client import build_service
from google_emulator.generator import make_message
from google_emulator.management.commands.google_emulator import Command
from google_emulator.server import GoogleEmulator

OWNER = "owner@push.example"
TOPIC = "projects/crm-test/topics/gmail"


class Receiver:
    """A loopback HTTP endpoint that records what it is sent and answers `status` after
    `delay_s` (the far end of a push subscription or channel)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 204
        self.delay_s = 0.0
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(
                    # Message: case-insensitive header names, as HTTP wants them
                    {"path": self.path, "headers": self.headers, "body": body}
                )
                receiver.arrived.set()
                time.sleep(receiver.delay_s)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/push"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def emu() -> Iterator[GoogleEmulator]:
    with GoogleEmulator() as emulator:
        emulator.add_mailbox(OWNER)
        emulator.push.retry_base_s = 0.05
        yield emulator


def new_mail(emulator: GoogleEmulator, subject: str = "Hello", labels=("INBOX",)) -> str:
    message = make_message(from_="sam@client.example", to=OWNER, subject=subject, labels=labels)
    return emulator.mailbox().add_message(message.raw, label_ids=message.label_ids)


def test_a_watched_mailbox_publishes_each_change_as_a_signed_pubsub_push(emu, receiver):
    emu.push.subscribe(TOPIC, receiver.url, audience="https://crm.example/google/push/gmail/")
    gmail = build_service("gmail", "v1", emu.url)

    watched = gmail.users().watch(userId="me", body={"topicName": TOPIC}).execute()
    new_mail(emu)
    assert emu.push.wait_idle(5)

    assert int(watched["historyId"]) < emu.mailbox().history_id
    assert int(watched["expiration"]) / 1000 > time.time() + 6.9 * 86_400
    (sent,) = receiver.requests
    envelope = json.loads(sent["body"])
    data = json.loads(base64.b64decode(envelope["message"]["data"]))
    assert data == {"emailAddress": OWNER, "historyId": emu.mailbox().history_id}
    assert envelope["message"]["messageId"] and envelope["message"]["publishTime"]
    assert envelope["subscription"].startswith("projects/")
    # The token verifies against the JWKS the emulator serves (real HTTP, PyJWT).
    token = sent["headers"]["Authorization"].removeprefix("Bearer ")
    keys = jwt.PyJWKClient(emu.jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        keys.key,
        algorithms=["RS256"],
        audience="https://crm.example/google/push/gmail/",
        issuer="https://accounts.google.com",
    )
    assert claims["email_verified"] is True and claims["email"].endswith(".gserviceaccount.com")
    # users.watch is priced as Google prices it.
    assert emu.log.quota_units() == 100


def test_the_jwks_is_cached_as_google_says(emu):
    with urllib.request.urlopen(emu.jwks_url) as response:
        assert "max-age=3600" in response.headers["Cache-Control"]
        keys = json.loads(response.read())["keys"]
    assert [key["kid"] for key in keys] == [emu.push.signer.kid]
    assert keys[0]["alg"] == "RS256" and keys[0]["kty"] == "RSA" and "d" not in keys[0]


def test_the_label_filter_and_stop_decide_what_is_published(emu, receiver):
    emu.push.subscribe(TOPIC, receiver.url)
    gmail = build_service("gmail", "v1", emu.url)
    gmail.users().watch(
        userId="me",
        body={"topicName": TOPIC, "labelIds": ["INBOX"], "labelFilterBehavior": "include"},
    ).execute()

    new_mail(emu, "spam", labels=("SPAM",))
    new_mail(emu, "inbox", labels=("INBOX",))
    emu.push.wait_idle(5)
    assert len(receiver.requests) == 1

    gmail.users().stop(userId="me").execute()
    new_mail(emu, "after stop")
    emu.push.wait_idle(5)
    assert len(receiver.requests) == 1
    assert emu.push.stop_calls == [OWNER]
    assert emu.log.quota_units() == 100 + 50


def test_a_watch_on_a_topic_gmail_may_not_publish_to_is_refused(emu):
    gmail = build_service("gmail", "v1", emu.url)
    with pytest.raises(HttpError) as refused:
        gmail.users().watch(userId="me", body={"topicName": "projects/x/topics/nope"}).execute()
    assert refused.value.status_code == 403
    with pytest.raises(HttpError) as malformed:
        gmail.users().watch(userId="me", body={"topicName": "gmail"}).execute()
    assert malformed.value.status_code == 400


def test_a_calendar_channel_says_sync_then_exists_and_stops(emu, receiver):
    calendar = build_service("calendar", "v3", emu.url)
    channel = (
        calendar.events()
        .watch(
            calendarId="primary",
            body={
                "id": "chan-1",
                "type": "web_hook",
                "address": receiver.url,
                "token": "s3cret",
                "params": {"ttl": "3600"},
            },
        )
        .execute()
    )
    emu.push.wait_idle(5)
    emu.mailbox().add_event(
        OWNER, {"summary": "Call", "start": {"date": "2026-01-02"}, "end": {"date": "2026-01-03"}}
    )
    emu.push.wait_idle(5)

    assert channel["id"] == "chan-1" and channel["resourceId"]
    assert int(channel["expiration"]) / 1000 == pytest.approx(time.time() + 3600, abs=5)
    states = [r["headers"]["X-Goog-Resource-State"] for r in receiver.requests]
    assert states == ["sync", "exists"]
    last = receiver.requests[-1]["headers"]
    assert last["X-Goog-Channel-ID"] == "chan-1" and last["X-Goog-Channel-Token"] == "s3cret"
    assert last["X-Goog-Resource-ID"] == channel["resourceId"]
    assert last["X-Goog-Message-Number"] == "2"

    calendar.channels().stop(body={"id": "chan-1", "resourceId": channel["resourceId"]}).execute()
    emu.mailbox().add_event(
        OWNER, {"summary": "Later", "start": {"date": "2026-01-04"}, "end": {"date": "2026-01-05"}}
    )
    emu.push.wait_idle(5)
    assert len(receiver.requests) == 2 and emu.push.channel_stops == ["chan-1"]
    with pytest.raises(HttpError) as again:
        calendar.channels().stop(body={"id": "chan-1", "resourceId": "x"}).execute()
    assert again.value.status_code == 404


def test_delivery_never_holds_up_the_api_and_retries_a_bounded_number_of_times(emu, receiver):
    emu.push.subscribe(TOPIC, receiver.url)
    gmail = build_service("gmail", "v1", emu.url)
    gmail.users().watch(userId="me", body={"topicName": TOPIC}).execute()
    receiver.status, receiver.delay_s = 503, 0.5

    started = time.monotonic()
    new_mail(emu)
    profile = gmail.users().getProfile(userId="me").execute()
    answered = time.monotonic() - started
    assert emu.push.wait_idle(15)

    assert profile["emailAddress"] == OWNER
    # The change and the API answer did not wait for the slow endpoint.
    assert answered < 0.5
    (delivery,) = emu.push.deliveries
    assert delivery.status == 503 and delivery.attempts == emu.push.retries + 1 == 4
    assert len(receiver.requests) == 4


def test_inject_endpoints_add_mail_and_meetings_that_are_announced(emu, receiver):
    emu.push.subscribe(TOPIC, receiver.url)
    build_service("gmail", "v1", emu.url).users().watch(
        userId="me", body={"topicName": TOPIC}
    ).execute()

    def post(path: str, body: dict) -> dict:
        request = urllib.request.Request(
            emu.url + path.lstrip("/"), data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    message = post("/emulator/inject/message", {"subject": "Quote"})
    event = post("/emulator/inject/event", {"summary": "Kick-off"})
    emu.push.wait_idle(5)

    stored = emu.mailbox().get(message["id"])
    assert stored.header("subject") == "Quote" and message["account"] == OWNER
    assert int(message["historyId"]) == emu.mailbox().history_id
    assert emu.mailbox().calendar("primary").get(event["id"])["summary"] == "Kick-off"
    assert len(receiver.requests) == 1  # the new message (the event has no channel)


def test_the_command_injects_into_a_running_emulator_and_exits(emu):
    out = io.StringIO()
    call_command(
        "google_emulator", "--inject", "message", "--url", emu.url, "--subject", "Hi", stdout=out
    )
    answer = json.loads(out.getvalue())
    assert emu.mailbox().get(answer["id"]).header("subject") == "Hi"

    call_command("google_emulator", "--inject", "event", "--url", emu.url, stdout=out)
    assert len(emu.mailbox().calendar("primary").events()) == 1

    with pytest.raises(CommandError, match=re.escape("refused: no account nobody@x.example")):
        call_command(
            "google_emulator",
            "--inject",
            "message",
            "--url",
            emu.url,
            "--inject-account",
            "nobody@x.example",
        )
    with pytest.raises(CommandError, match=re.escape("no emulator answers at http://127.0.0.1:9/")):
        call_command("google_emulator", "--inject", "event", "--url", "http://127.0.0.1:9/")


def test_the_command_serves_pubsub_push_subscriptions(monkeypatch, receiver):
    out = io.StringIO()
    seen = {}

    def check(command: Command) -> None:
        url = re.search(r"ready (\S+)", out.getvalue()).group(1)
        gmail = build_service("gmail", "v1", url)
        gmail.users().watch(userId="me", body={"topicName": TOPIC}).execute()
        call_command("google_emulator", "--inject", "message", "--url", url, stdout=io.StringIO())
        seen["arrived"] = receiver.arrived.wait(5)
        raise KeyboardInterrupt

    monkeypatch.setattr(Command, "wait", check)
    call_command(
        "google_emulator",
        "--port",
        "0",
        "--pubsub-push",
        f"{TOPIC}={receiver.url}",
        "--pubsub-audience",
        "crm-push",
        stdout=out,
    )
    assert seen["arrived"]
    token = receiver.requests[0]["headers"]["Authorization"].removeprefix("Bearer ")
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "crm-push"
    assert f"Pub/Sub push: {TOPIC} -> {receiver.url} (audience crm-push)" in out.getvalue()

    with pytest.raises(CommandError, match="expected projects/P/topics/T=URL"):
        call_command("google_emulator", "--port", "0", "--pubsub-push", "gmail=http://x/")
