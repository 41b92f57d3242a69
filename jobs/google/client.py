"""Gmail and Calendar services for a GoogleAccount, and the paced, error-mapped way to call them."""

from __future__ import annotations

import functools
import json
import logging
import random
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import google_auth_httplib2
import httplib2
from django.conf import settings
from google.auth.credentials import Credentials
from googleapiclient.discovery import Resource, build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest

from jobs.config import get_config
from jobs.errors import TransientError
from jobs.google import pacer
from jobs.google.credentials import get_credentials
from jobs.google.errors import (
    TRANSPORT_ERRORS,
    CursorExpired,
    is_retryable,
    map_http_error,
    map_transport_error,
    status_of,
)
from jobs.google.errors import retry_after as retry_after_of
from jobs.models import GoogleAccount

logger = logging.getLogger(__name__)

# Gmail advises at most 50 calls per batch (more trips its concurrent-request limit).
BATCH_MAX_PARTS = 50


@functools.lru_cache(maxsize=16)
def discovery_document(api: str, version: str, root_url: str) -> str:
    """The library's bundled discovery document, its rootUrl pointed at `root_url` if given."""
    text = get_static_doc(api, version)
    if text is None:
        raise LookupError(f"no bundled discovery document for {api} {version}")
    if not root_url:
        return text
    document = json.loads(text)
    document["rootUrl"] = root_url
    # The mTLS endpoint would bypass the emulator; Google's own document keeps it.
    document.pop("mtlsRootUrl", None)
    return json.dumps(document)


def build_with_credentials(api: str, version: str, credentials: Credentials) -> Resource:
    """A service over AuthorizedHttp(credentials) with the configured timeout, aimed at
    settings.GOOGLE_API_ROOT when set (Google otherwise)."""
    root = getattr(settings, "GOOGLE_API_ROOT", "") or ""
    if root and not root.endswith("/"):
        root += "/"
    http = google_auth_httplib2.AuthorizedHttp(
        credentials, http=httplib2.Http(timeout=get_config().google_request_timeout_s)
    )
    return build_from_document(discovery_document(api, version, root), http=http)


def _service(api: str, version: str, account: GoogleAccount) -> Resource:
    return build_with_credentials(api, version, get_credentials(account))


def gmail_service(account: GoogleAccount) -> Resource:
    """Gmail v1 for `account` (Google, or settings.GOOGLE_API_ROOT such as the emulator)."""
    return _service("gmail", "v1", account)


def calendar_service(account: GoogleAccount) -> Resource:
    """Calendar v3 for `account`."""
    return _service("calendar", "v3", account)


def method_id(request: Any) -> str:
    return str(getattr(request, "methodId", "") or "")


@dataclass(frozen=True, slots=True)
class PartFailure:
    """A batch part that failed in its slot of batch_execute's results, when the caller asked
    for `collect_failures`: the mapped error, for the caller to record. `transient`: the part
    kept failing with a retryable error (5xx, 429) through every resend while other parts of
    its batch succeeded, so it is the item, not an outage; worth trying again soon."""

    error: Exception
    transient: bool = False


def execute(
    request: HttpRequest,
    *,
    account: GoogleAccount,
    units: int | None = None,
    priority: str = "normal",
) -> Any:
    """Run one API request: pace its quota, let the library retry, map what still fails.

    `units` defaults to the method's cost (pacer.cost: Gmail units, 1 per Calendar request);
    `priority="background"` (backfill) spends at most quota_background_share of the per-user
    limit (jobs.google.pacer). Raises TransientError (429, 403 rate
    limits, 5xx, timeouts; retry_after from Retry-After), CursorExpired (404 history.list,
    410 events.list) or PermanentError (400, 401 after refresh, other 403/404).
    """
    method = method_id(request)
    _pace(account, method, pacer.cost(method) if units is None else units, priority)
    try:
        return request.execute(num_retries=get_config().google_request_retries)
    except HttpError as exc:
        raise map_http_error(exc, method) from None
    except TRANSPORT_ERRORS as exc:
        raise map_transport_error(exc, method) from None


def batch_execute(
    service: Resource,
    requests: Sequence[HttpRequest],
    *,
    account: GoogleAccount,
    units_each: int | None = None,
    priority: str = "normal",
    collect_failures: bool = False,
    suspects: Collection[int] = (),
) -> list[Any]:
    """Run `requests` in HTTP batches of <= 50; responses in the same order.

    Parts that fail with 429 / 5xx / 403 rate limits are sent again on their own, in a new
    batch, after a jittered backoff (Retry-After honoured up to a cap; a longer wait raises
    TransientError(retry_after=...) for the job engine). A part answering 404 (message deleted
    meanwhile) gives None in its slot; any other failing part raises its mapped error, or with
    `collect_failures` leaves a PartFailure in its slot (one poison item never stops the rest).
    `priority` "background" (backfill) may spend only part of the quota (see jobs.google.pacer).
    With `collect_failures`, a part that keeps failing with a retryable error through every
    resend while the rest of its batch came back (at most a tenth of the batch fails), or that
    is one of the `suspects` (indexes of items that failed before), is left as
    PartFailure(transient=True) too; more failing parts are an outage and raise.
    """
    results: list[Any] = [None] * len(requests)
    for chunk in _chunks(requests, account, units_each, priority):
        _run_chunk(
            service,
            chunk,
            results,
            account=account,
            units_each=units_each,
            priority=priority,
            collect_failures=collect_failures,
            suspects=suspects,
        )
    return results


def _units(request: HttpRequest, units_each: int | None) -> int:
    return pacer.cost(method_id(request)) if units_each is None else units_each


def _chunks(
    requests: Sequence[HttpRequest], account: GoogleAccount, units_each: int | None, priority: str
) -> list[dict[int, HttpRequest]]:
    """Consecutive batches of <= 50 parts, each small enough for one quota reservation."""
    chunks: list[dict[int, HttpRequest]] = []
    chunk: dict[int, HttpRequest] = {}
    chunk_units = 0
    largest: dict[str, float] = {}
    for index, request in enumerate(requests):
        units = _units(request, units_each)
        api = pacer.api_of(method_id(request))
        if api is not None and api not in largest:
            largest[api] = pacer.largest_reservation(_mailbox(account), api, priority)
        over = api is not None and chunk_units + units > largest[api]
        if chunk and (len(chunk) >= BATCH_MAX_PARTS or over):
            chunks.append(chunk)
            chunk, chunk_units = {}, 0
        chunk[index] = request
        chunk_units += units
    if chunk:
        chunks.append(chunk)
    return chunks


def _pace(account: GoogleAccount, method: str, units: float, priority: str) -> None:
    api = pacer.api_of(method)
    if api is not None:
        pacer.take(_mailbox(account), units, api=api, priority=priority)


def _mailbox(account: GoogleAccount) -> str:
    """What Google's per-user quota counts: the mailbox, however many CRM users connected it."""
    return account.email.lower()


def _run_chunk(
    service: Resource,
    pending: dict[int, HttpRequest],
    results: list[Any],
    *,
    account: GoogleAccount,
    units_each: int | None,
    priority: str = "normal",
    collect_failures: bool = False,
    suspects: Collection[int] = (),
) -> None:
    config = get_config()
    attempt = 0
    parts = len(pending)
    while pending:
        # A batch's parts are priced one by one, as Google counts them.
        first_method = method_id(next(iter(pending.values())))
        units = sum(_units(request, units_each) for request in pending.values())
        _pace(account, first_method, units, priority)
        failed = _send_batch(service, pending, results, collect_failures=collect_failures)
        if not failed:
            return
        attempt += 1
        index, first = next(iter(failed.items()))
        if attempt > config.google_request_retries:
            # A few parts (at most a tenth of the batch) keep failing while the rest came back:
            # those items are the problem, not an outage, and one of them must not hold up the
            # others; the caller records them and tries them again later. More than that is an
            # outage (it started mid-batch, say): the job retries the whole chunk.
            few = len(failed) <= max(1, parts // 10)
            if collect_failures and (
                (few and len(failed) < parts) or all(i in suspects for i in failed)
            ):
                for i, exc in failed.items():
                    results[i] = PartFailure(_mapped(exc, method_id(pending[i])), transient=True)
                return
            raise _mapped(first, method_id(pending[index]))
        wait = _backoff(attempt, failed.values(), config.google_batch_retry_base_s)
        if wait > config.google_retry_after_cap_s:
            raise TransientError(
                f"{method_id(pending[index]) or 'batch'}: {len(failed)} part(s) failed and "
                f"Google asked to wait {wait:.0f}s",
                retry_after=wait,
            )
        logger.info(
            "retrying %d of %d batch part(s) in %.2fs (attempt %d)",
            len(failed),
            len(pending),
            wait,
            attempt,
        )
        time.sleep(wait)
        pending = {i: pending[i] for i in failed}


def _send_batch(
    service: Resource,
    pending: dict[int, HttpRequest],
    results: list[Any],
    *,
    collect_failures: bool = False,
) -> dict[int, BaseException]:
    """One HTTP batch; fills `results`, returns the retryable failures by index."""
    failed: dict[int, BaseException] = {}
    fatal: list[tuple[int, HttpError]] = []

    def on_part(request_id: str, response: Any, exception: BaseException | None) -> None:
        index = int(request_id)
        if exception is None:
            results[index] = response
        elif not isinstance(exception, HttpError) or is_retryable(exception):
            failed[index] = exception
        elif status_of(exception) == 404 and not isinstance(
            map_http_error(exception, method_id(pending[index])), CursorExpired
        ):
            # Deleted between list and get: nothing to fetch, not an error.
            results[index] = None
        elif collect_failures:
            results[index] = PartFailure(map_http_error(exception, method_id(pending[index])))
        else:
            fatal.append((index, exception))

    batch = service.new_batch_http_request(callback=on_part)
    for index, request in pending.items():
        batch.add(request, request_id=str(index))
    try:
        batch.execute()
    except HttpError as exc:
        # The batch request itself failed (429 / 503 on the batch endpoint): every part is due.
        if not is_retryable(exc):
            raise map_http_error(exc, "batch") from None
        return dict.fromkeys(pending, exc)
    except TRANSPORT_ERRORS as exc:
        return dict.fromkeys(pending, exc)
    if fatal:
        index, error = fatal[0]
        raise map_http_error(error, method_id(pending[index])) from None
    return failed


def _mapped(exc: BaseException, method: str) -> Exception:
    if isinstance(exc, HttpError):
        return map_http_error(exc, method)
    return map_transport_error(exc, method)


def _backoff(attempt: int, failures: Any, base_s: float) -> float:
    """Jittered exponential backoff, but never shorter than the longest Retry-After."""
    delay = random.uniform(base_s / 2, base_s) * 2 ** (attempt - 1)
    hinted = [
        seconds
        for exc in failures
        if isinstance(exc, HttpError) and (seconds := retry_after_of(exc)) is not None
    ]
    return max([delay, *hinted])
