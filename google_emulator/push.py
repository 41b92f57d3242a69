"""Push notifications as Google sends them: Gmail watches published through an emulated Cloud
Pub/Sub push subscription with a signed OIDC token, and Calendar notification channels.

- users.watch / users.stop keep one watch per mailbox (topic, label filter, expiry); a change
  of the mailbox (a history record) that the filter lets through is published to the topic,
  and every push subscription of that topic receives a POST of Pub/Sub's envelope
  {"message": {"data": base64 JSON {"emailAddress", "historyId"}, "messageId", "publishTime"},
  "subscription"} with `Authorization: Bearer <JWT>`: RS256, signed with the emulator's own
  key (`PushSigner`), whose JWKS it serves at /oauth2/v3/certs with a Cache-Control max-age,
  so a receiver verifies it with its real code path pointed at another key URL.
- events.watch opens a channel on a calendar (our id and token, an expiry from params.ttl),
  announced at once by a "sync" message; every live change of the calendar then sends
  "exists" with the X-Goog-Channel-* and X-Goog-Resource-* headers; channels.stop ends it.

Deliveries never block the emulator's request handling: they go through a queue to a
delivery thread, which POSTs each one with a timeout and retries a failure a bounded number
of times (Pub/Sub: any non-2xx; Calendar: 5xx and connection errors), and records every
outcome (`deliveries`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import queue
import secrets
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from google_emulator import errors

logger = logging.getLogger(__name__)

GOOGLE_ISSUER = "https://accounts.google.com"
DEFAULT_SERVICE_ACCOUNT = "pubsub-push@emulator-project.iam.gserviceaccount.com"
GMAIL_WATCH_TTL_S = 7 * 86_400
CALENDAR_CHANNEL_TTL_S = 604_800


class PushSigner:
    """An RSA key of the emulator's own, as Google's OIDC tokens are signed with Google's."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65_537, key_size=2048)
        self.kid = secrets.token_hex(10)

    def jwks(self) -> dict:
        """The public key as Google publishes its keys (https://www.googleapis.com/oauth2/v3/certs)."""
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def token(
        self,
        *,
        audience: str,
        email: str,
        lifetime_s: float = 3600,
        issued_at: float | None = None,
        issuer: str = GOOGLE_ISSUER,
        email_verified: bool = True,
    ) -> str:
        """An OIDC token as Pub/Sub puts in a push request's Authorization header."""
        now = int(time.time() if issued_at is None else issued_at)
        claims = {
            "aud": audience,
            "azp": "108410000000000000001",
            "email": email,
            "email_verified": email_verified,
            "exp": now + int(lifetime_s),
            "iat": now,
            "iss": issuer,
            "sub": "108410000000000000001",
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})


@dataclass
class Subscription:
    """A Pub/Sub push subscription: where a topic's messages are POSTed, signed for whom."""

    topic: str
    endpoint: str
    audience: str
    service_account: str
    name: str


@dataclass
class GmailWatch:
    email: str
    topic: str
    label_ids: tuple[str, ...]
    behavior: str  # include | exclude
    expiration_ms: int


@dataclass
class Channel:
    id: str
    resource_id: str
    email: str
    calendar_id: str
    address: str
    token: str
    expiration_ms: int
    messages: int = 0


@dataclass
class Delivery:
    """One notification's delivery: where, what, and how it ended (status 0: no answer)."""

    kind: str  # "gmail" | "calendar"
    url: str
    body: bytes
    headers: dict[str, str]
    status: int = 0
    attempts: int = 0
    queued_at: float = field(default_factory=time.monotonic)
    done_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


_STOP = object()


class PushHub:
    """The emulator's push side: watches, subscriptions, channels and the delivery thread.

    `retries` (3) more attempts follow a failed delivery, `retry_base_s` (0.2 s) apart and
    doubling; `timeout_s` bounds each POST. `gmail_watch_ttl_s` is how long users.watch lasts.
    """

    def __init__(self) -> None:
        self.signer = PushSigner()
        self.jwks_max_age_s = 3600
        self.retries = 3
        self.retry_base_s = 0.2
        self.timeout_s = 5.0
        self.gmail_watch_ttl_s = GMAIL_WATCH_TTL_S
        self.project = "emulator-project"
        self._lock = threading.RLock()
        self._topics: dict[str, list[Subscription]] = {}
        self._watches: dict[str, GmailWatch] = {}
        self._channels: dict[str, Channel] = {}
        self._published = 0
        # What clients asked for, for tests and benchmarks to read.
        self.watch_calls: list[dict[str, Any]] = []
        self.stop_calls: list[str] = []
        self.channel_calls: list[dict[str, Any]] = []
        self.channel_stops: list[str] = []
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[Any] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    # -- Pub/Sub ------------------------------------------------------------------------------

    def subscribe(
        self,
        topic: str,
        endpoint: str,
        *,
        audience: str | None = None,
        service_account: str = DEFAULT_SERVICE_ACCOUNT,
        name: str | None = None,
    ) -> Subscription:
        """A push subscription on `topic` (created if new): its messages are POSTed to
        `endpoint` with a token for `audience` (by default the endpoint, as Pub/Sub does)."""
        subscription = Subscription(
            topic=topic,
            endpoint=endpoint,
            audience=audience or endpoint,
            service_account=service_account,
            name=name or f"projects/{self.project}/subscriptions/push-{len(self._topics) + 1}",
        )
        with self._lock:
            self._topics.setdefault(topic, []).append(subscription)
        return subscription

    def subscriptions(self) -> dict[str, list[Subscription]]:
        with self._lock:
            return {topic: list(subs) for topic, subs in self._topics.items()}

    def create_topic(self, topic: str) -> None:
        """A topic without subscriptions: users.watch accepts it, its messages go nowhere."""
        with self._lock:
            self._topics.setdefault(topic, [])

    def unsubscribe(self, topic: str) -> None:
        """Drop the topic's push subscriptions (the topic stays)."""
        with self._lock:
            self._topics[topic] = []

    # -- Gmail --------------------------------------------------------------------------------

    def gmail_watch(self, email: str, history_id: int, body: dict) -> dict:
        topic = str(body.get("topicName") or "")
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "projects" or parts[2] != "topics" or not all(parts):
            raise errors.invalid_argument(
                f"Invalid topicName does not match projects/SOME-PROJECT/topics/*: {topic}"
            )
        behavior = str(body.get("labelFilterBehavior") or body.get("labelFilterAction") or "")
        if behavior not in ("", "include", "exclude"):
            raise errors.invalid_argument(f"Invalid labelFilterBehavior: {behavior}")
        with self._lock:
            if topic not in self._topics:
                # Gmail publishes as gmail-api-push@system.gserviceaccount.com: a topic that does
                # not exist, or that account may not publish to, fails the same way.
                raise errors.ApiError(
                    403,
                    "forbidden",
                    f"Error sending test message to Cloud PubSub {topic} : User not authorized "
                    "to perform this action.",
                )
            expiration = int((time.time() + self.gmail_watch_ttl_s) * 1000)
            self._watches[email.lower()] = GmailWatch(
                email=email,
                topic=topic,
                label_ids=tuple(body.get("labelIds") or ()),
                behavior=behavior or "include",
                expiration_ms=expiration,
            )
            self.watch_calls.append(
                {"email": email, "topic": topic, "labelIds": list(body.get("labelIds") or ())}
            )
        return {"historyId": str(history_id), "expiration": str(expiration)}

    def gmail_stop(self, email: str) -> None:
        with self._lock:
            self._watches.pop(email.lower(), None)
            self.stop_calls.append(email)

    def watch_of(self, email: str) -> GmailWatch | None:
        with self._lock:
            return self._watches.get(email.lower())

    def mailbox_changed(
        self, email: str, history_id: int, label_ids: tuple[str, ...], changed: tuple[str, ...]
    ) -> None:
        """A history record: publish it when the mailbox is watched and the filter lets it
        through (include: the message or the change touches a watched label; exclude: it
        touches some other label)."""
        with self._lock:
            watch = self._watches.get(email.lower())
            if watch is None:
                return
            if watch.expiration_ms <= time.time() * 1000:
                del self._watches[email.lower()]
                return
            touched = set(label_ids) | set(changed)
            if watch.label_ids:
                wanted = set(watch.label_ids)
                if watch.behavior == "include" and not touched & wanted:
                    return
                if watch.behavior == "exclude" and touched <= wanted:
                    return
            subscriptions = list(self._topics.get(watch.topic, ()))
            self._published += 1
            message_id = str(10_000_000_000 + self._published)
        data = json.dumps({"emailAddress": watch.email, "historyId": history_id}).encode()
        published = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        for subscription in subscriptions:
            envelope = {
                "message": {
                    "data": base64.b64encode(data).decode(),
                    "attributes": {},
                    "messageId": message_id,
                    "message_id": message_id,
                    "publishTime": published,
                    "publish_time": published,
                },
                "subscription": subscription.name,
            }
            token = self.signer.token(
                audience=subscription.audience, email=subscription.service_account
            )
            self._send(
                Delivery(
                    kind="gmail",
                    url=subscription.endpoint,
                    body=json.dumps(envelope).encode(),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                        "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
                    },
                    detail={"email": watch.email, "historyId": history_id},
                )
            )

    # -- Calendar -----------------------------------------------------------------------------

    def calendar_watch(self, email: str, calendar_id: str, body: dict) -> dict:
        channel_id = str(body.get("id") or "")
        address = str(body.get("address") or "")
        kind = str(body.get("type") or "")
        if not channel_id or not address:
            raise errors.ApiError(400, "required", "Required")
        if kind not in ("web_hook", "webhook"):
            raise errors.ApiError(400, "invalid", f"Invalid channel type: {kind}")
        if not address.startswith(("https://", "http://")):
            raise errors.ApiError(400, "push.webhookUrlNotHttps", "WebHook callback must be HTTPS")
        params = body.get("params") or {}
        ttl = params.get("ttl") if isinstance(params, dict) else None
        ttl_s = int(str(ttl)) if str(ttl or "").isdigit() else CALENDAR_CHANNEL_TTL_S
        with self._lock:
            if channel_id in self._channels:
                raise errors.ApiError(
                    400, "channelIdNotUnique", f"Channel id {channel_id} not unique"
                )
            channel = Channel(
                id=channel_id,
                resource_id=uuid.uuid4().hex[:27],
                email=email,
                calendar_id=calendar_id,
                address=address,
                token=str(body.get("token") or ""),
                expiration_ms=int((time.time() + ttl_s) * 1000),
            )
            self._channels[channel_id] = channel
            self.channel_calls.append(
                {"email": email, "calendarId": calendar_id, "id": channel_id, "ttl": ttl_s}
            )
        self._notify_channel(channel, "sync")
        return {
            "kind": "api#channel",
            "id": channel.id,
            "resourceId": channel.resource_id,
            "resourceUri": self._resource_uri(channel),
            "token": channel.token,
            "expiration": str(channel.expiration_ms),
        }

    def channel_stop(self, email: str, body: dict) -> None:
        channel_id = str(body.get("id") or "")
        with self._lock:
            channel = self._channels.get(channel_id)
            if (
                channel is None
                or channel.email.lower() != email.lower()
                or channel.resource_id != str(body.get("resourceId") or "")
            ):
                raise errors.ApiError(
                    404, "notFound", f"Channel '{channel_id}' not found for project"
                )
            del self._channels[channel_id]
            self.channel_stops.append(channel_id)

    def channels(self, email: str | None = None) -> list[Channel]:
        with self._lock:
            return [c for c in self._channels.values() if email is None or c.email.lower() == email]

    def calendar_changed(self, email: str, calendar_id: str) -> None:
        now_ms = time.time() * 1000
        with self._lock:
            live = [
                channel
                for channel in self._channels.values()
                if channel.email.lower() == email.lower()
                and channel.calendar_id == calendar_id
                and channel.expiration_ms > now_ms
            ]
        for channel in live:
            self._notify_channel(channel, "exists")

    def _resource_uri(self, channel: Channel) -> str:
        return (
            f"https://www.googleapis.com/calendar/v3/calendars/{channel.calendar_id}/events"
            "?alt=json"
        )

    def _notify_channel(self, channel: Channel, state: str) -> None:
        with self._lock:
            channel.messages += 1
            number = channel.messages
        expires = datetime.fromtimestamp(channel.expiration_ms / 1000, tz=UTC)
        headers = {
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Expiration": format_datetime(expires, usegmt=True),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-URI": self._resource_uri(channel),
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(number),
            "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
        }
        if channel.token:
            headers["X-Goog-Channel-Token"] = channel.token
        self._send(
            Delivery(
                kind="calendar",
                url=channel.address,
                body=b"",
                headers=headers,
                detail={"channel": channel.id, "state": state, "calendarId": channel.calendar_id},
            )
        )

    # -- Delivery -----------------------------------------------------------------------------

    def _send(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._closing.clear()
                self._thread = threading.Thread(
                    target=self._deliver_forever, name="google-emulator-push", daemon=True
                )
                self._thread.start()
        self._queue.put(delivery)

    def _deliver_forever(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._deliver(item)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, delivery: Delivery) -> None:
        for attempt in range(self.retries + 1):
            if self._closing.is_set():
                break
            if attempt:
                self._closing.wait(self.retry_base_s * 2 ** (attempt - 1))
            delivery.attempts = attempt + 1
            delivery.status = _post(delivery, self.timeout_s)
            if 200 <= delivery.status < 300 or delivery.status == 102:
                break
            # Calendar sends again on 5xx only; Pub/Sub on any other answer.
            if delivery.kind == "calendar" and 0 < delivery.status < 500:
                break
        delivery.done_at = time.monotonic()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued delivery has ended (True), or `timeout` passes (False)."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        """Stop the delivery thread (what is still queued is dropped, as with a stopped server)."""
        self._closing.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout=self.timeout_s + 1)
        self._thread = None
        with contextlib.suppress(queue.Empty):
            while True:
                item = self._queue.get_nowait()
                if item is not _STOP:
                    with self._lock:
                        self._pending -= 1
        with self._lock:
            self._idle.notify_all()


def _post(delivery: Delivery, timeout_s: float) -> int:
    request = urllib.request.Request(
        delivery.url, data=delivery.body, headers=delivery.headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)
    except (OSError, ValueError) as exc:
        logger.debug("push delivery to %s failed: %s", delivery.url, exc)
        return 0


def listen(hub: PushHub, email: str) -> Any:
    """The mailbox listener that feeds `hub` the changes of the mailbox `email`."""

    def on_event(event: dict) -> None:
        if event["kind"] == "gmail":
            hub.mailbox_changed(email, event["historyId"], event["labelIds"], event["changed"])
        else:
            hub.calendar_changed(email, event["calendarId"])

    return on_event
