"""The emulator: Gmail v1, Calendar v3, OAuth and batch endpoints over real loopback HTTP, and
push notifications (Gmail watch through Pub/Sub, Calendar channels)."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from google_emulator import batch, calendar_api, errors, gmail_api, oauth_api, push_api
from google_emulator.accounts import Accounts
from google_emulator.faults import Disconnect, FaultSet
from google_emulator.generator import GeneratedMailbox
from google_emulator.params import Params
from google_emulator.push import PushHub, listen
from google_emulator.quota import QuotaLimits, QuotaMeter
from google_emulator.requestlog import LogEntry, RequestLog
from google_emulator.routing import Call, Reply, Route, json_reply
from google_emulator.state import Mailbox

logger = logging.getLogger(__name__)

ROUTES: list[Route] = [
    *gmail_api.ROUTES,
    *calendar_api.ROUTES,
    *oauth_api.ROUTES,
    *batch.ROUTES,
    *push_api.ROUTES,
]
ROUTE_NAMES = sorted({route.name for route in ROUTES})


class GoogleEmulator:
    """Serves one or more Google accounts; thread-safe; start() it, point the real client at url.

    With require_token=False any bearer token (or none) acts for the default (first) mailbox;
    with require_token=True only access tokens issued by its /token endpoint are accepted.

    Latency: `latency_s` is added to every HTTP request, `part_latency_s` to every API call in
    it (a plain call, or each part of a batch, whose parts are served `part_concurrency` at a
    time), so a batch of 50 costs more than one GET. `quota` (QuotaLimits, None = off)
    enforces Google's per-minute limits over a sliding window (google_emulator.quota);
    `quota_rejections` counts the quota 429s it answered.

    Push: `push` (google_emulator.push.PushHub) holds the Gmail watches, the Pub/Sub push
    subscriptions (`push.subscribe(topic, endpoint)`), the Calendar channels and the delivery
    thread; the JWKS of its tokens is served at `jwks_url`; POST /emulator/inject/message or
    /emulator/inject/event adds mail or a meeting, which is announced like any change.
    """

    def __init__(
        self,
        *,
        require_token: bool = False,
        latency_s: float = 0.0,
        part_latency_s: float = 0.0,
        part_concurrency: int = 1,
        quota: QuotaLimits | None = None,
        fault_seed: int = 0,
    ) -> None:
        if part_concurrency < 1:
            raise ValueError("part_concurrency must be at least 1")
        self.require_token = require_token
        self.latency_s = latency_s
        self.part_latency_s = part_latency_s
        self.part_concurrency = part_concurrency
        self.quota = QuotaMeter(quota)
        self.push = PushHub()
        self.accounts = Accounts(on_add=self._listen)
        self.faults = FaultSet(ROUTE_NAMES, seed=fault_seed)
        self.log = RequestLog()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._url: str | None = None

    # -- accounts -----------------------------------------------------------------------------

    def _listen(self, mailbox: Mailbox) -> None:
        mailbox.listeners.append(listen(self.push, mailbox.email))

    def add_mailbox(
        self,
        owner_email: str,
        generated: GeneratedMailbox | None = None,
        aliases: Sequence[str] = (),
    ) -> Mailbox:
        """Serve a mailbox (empty, or loaded from a generated one); the first is the default."""
        mailbox = Mailbox(owner_email, tuple(aliases) or (generated.aliases if generated else ()))
        if generated is not None:
            mailbox.load_generated(generated)
        return self.accounts.add(mailbox)

    def mailbox(self, email: str | None = None) -> Mailbox:
        """A served mailbox by address, or the default one."""
        return self.accounts.get(email)

    def register_account(self, email: str, *, aliases: Sequence[str] = ()) -> str:
        """Consent for an account (added empty if absent); returns a refresh token for it."""
        self.accounts.ensure(email, aliases)
        return self.accounts.register(email)

    def issue_code(self, email: str) -> str:
        """An authorization code (with offline access) for the account, as consent would give."""
        return self.accounts.issue_code(email)

    def revoke(self, token: str) -> None:
        """Revoke a refresh (or access) token: refreshing it then fails with invalid_grant."""
        self.accounts.revoke(token)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far answers 401 from now on."""
        self.accounts.expire_access_tokens()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The root URL ("http://127.0.0.1:PORT/") to put in the discovery document's rootUrl."""
        if self._url is None:
            raise RuntimeError("the emulator is not running; call start()")
        return self._url

    @property
    def jwks_url(self) -> str:
        """Where the keys of its push tokens are (CRM_PIPELINE push_jwks_url, in tests)."""
        return self.url.rstrip("/") + push_api.JWKS_PATH

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen and serve in a daemon thread; returns the root URL once requests are answered."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._stopping.clear()
        self._server = _Server((host, port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="google-emulator",
            daemon=True,
        )
        self._thread.start()
        bound_host, bound_port = self._server.server_address[:2]
        host = bound_host.decode() if isinstance(bound_host, bytes) else str(bound_host)
        shown = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown}:{bound_port}/"
        return self._url

    def stop(self) -> None:
        """Stop serving; delayed answers are cut short and open connections closed."""
        server, self._server, self._url = self._server, None, None
        if server is None:
            return
        self._stopping.set()
        self.push.close()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> GoogleEmulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- dispatch -----------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        *,
        in_batch: bool = False,
    ) -> Reply:
        """Answer one call (an HTTP request or a batch part) and log it."""
        started, at = time.perf_counter(), time.monotonic()
        path, _, query = target.partition("?")
        route, args = _find_route(method, path)
        try:
            if route is None:
                raise errors.not_found(f"Not Found: {method} {path}")
            reply = self._answer(
                route, Call(method, path, Params(query), headers, body, args, self)
            )
        except errors.ApiError as error:
            reply = json_reply(error.body(), error.status, error.headers)
        except Disconnect:
            self.log.append(
                LogEntry(
                    method=method,
                    path=path,
                    route=route.name if route is not None else "unknown",
                    status=0,
                    duration_s=time.perf_counter() - started,
                    in_batch=in_batch,
                )
            )
            raise
        except Exception:
            logger.exception("emulator handler failed for %s %s", method, target)
            reply = json_reply(errors.server_error(500).body(), 500)
        units = route.quota_units if route is not None and reply.status < 300 else 0
        self.log.append(
            LogEntry(
                method=method,
                path=path,
                route=route.name if route is not None else "unknown",
                status=reply.status,
                duration_s=time.perf_counter() - started,
                quota_units=units,
                in_batch=in_batch,
                batch_parts=reply.batch_parts,
                at=at,
            )
        )
        return reply

    def pause(self, seconds: float) -> None:
        """Sleep, but wake up when the emulator stops."""
        if seconds > 0:
            self._stopping.wait(seconds)

    @property
    def quota_rejections(self) -> int:
        """How many quota 429s (userRateLimitExceeded + rateLimitExceeded) were answered."""
        return self.quota.rejected

    def _answer(self, route: Route, call: Call) -> Reply:
        if route.api in ("gmail", "calendar"):
            authorization = call.headers.get("authorization")
            call.mailbox, call.grant = self.accounts.authenticate(authorization, self.require_token)
            if call.grant is not None and not call.grant.allows(route.api):
                raise errors.insufficient_scopes()
            # Gmail prices each call in units, Calendar counts requests.
            units = route.quota_units if route.api == "gmail" else 1
            self.quota.charge(route.api, call.mailbox.email, units)
            self.pause(self.part_latency_s)
        hit = self.faults.match(route.name, call.path)
        if hit is not None:
            self.pause(hit.delay_s)
            error = hit.error()  # raises Disconnect for reset and stall
            if error is not None:
                raise error
        return route.handler(call)


def _find_route(method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    for route in ROUTES:
        args = route.match(method, path)
        if args is not None:
            return route, args
    return None, {}


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httplib2 expects
    server_version = "ESF"
    sys_version = ""
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        emulator = self.server.emulator
        emulator.pause(emulator.latency_s)
        try:
            reply = emulator.handle(self.command, self.path, headers, body)
        except Disconnect as disconnect:
            # A stall answers nothing for a while; both end with the connection reset.
            emulator.pause(disconnect.stall_s)
            self._reset()
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout test, say); nothing left to answer.
            self.close_connection = True

    def _reset(self) -> None:
        """Drop the connection with a TCP reset, answering nothing."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # worker pools open many connections at once

    def __init__(self, address: tuple[str, int], emulator: GoogleEmulator) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def process_request(  # type: ignore[override]
        self, request: socket.socket, client_address: object
    ) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close kept-alive connections so a stopped emulator answers nothing more."""
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)
