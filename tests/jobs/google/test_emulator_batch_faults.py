"""Batches, injected faults, client retries, timeouts, latency and the request log."""

from __future__ import annotations

import socket
import time

import pytest
from googleapiclient.errors import HttpError

from google_emulator.client import build_service
from google_emulator.faults import FaultSet
from google_emulator.server import ROUTE_NAMES


def message_ids(gmail, count: int) -> list[str]:
    return [
        m["id"]
        for m in gmail.users().messages().list(userId="me", maxResults=count).execute()["messages"]
    ]


def run_batch(
    gmail, ids: list[str], fmt: str = "metadata"
) -> dict[str, tuple[dict | None, Exception | None]]:
    results: dict[str, tuple[dict | None, Exception | None]] = {}
    batch = gmail.new_batch_http_request()
    for message_id in ids:
        batch.add(
            gmail.users().messages().get(userId="me", id=message_id, format=fmt),
            callback=lambda request_id, response, error: results.__setitem__(
                request_id, (response, error)
            ),
            request_id=message_id,
        )
    batch.execute()
    return results


def no_backoff(request):
    """Record the client's backoff sleeps instead of sleeping through them."""
    request.sleeps = []
    request._sleep = request.sleeps.append
    return request


def test_a_batch_of_50_gets_is_one_http_request(gmail, emulator):
    ids = message_ids(gmail, 50)
    emulator.log.reset()

    results = run_batch(gmail, ids)

    assert emulator.log.count() == 1
    assert emulator.log.paths() == ["/batch"]
    assert emulator.log.count("gmail.users.messages.get", http_only=False) == 50
    assert emulator.log[-1].batch_parts == 50 and len(emulator.log) == 51
    assert {response["id"] for response, _ in results.values()} == set(ids)
    assert emulator.log.quota_units() == 50 * 5


def test_a_batch_part_that_got_429_reaches_its_callback_as_http_error(gmail, emulator):
    ids = message_ids(gmail, 10)
    emulator.faults.add("gmail.users.messages.get", 429, after=3, times=1, retry_after=1)

    results = run_batch(gmail, ids)

    failed = {request_id: error for request_id, (_, error) in results.items() if error is not None}
    assert list(failed) == [ids[3]]
    error = failed[ids[3]]
    assert isinstance(error, HttpError) and error.status_code == 429
    assert error.error_details[0]["reason"] == "rateLimitExceeded"
    assert error.resp["retry-after"] == "1"
    assert all(results[i][0]["id"] == i for i in ids if i != ids[3])


def test_the_failed_parts_of_a_batch_succeed_when_sent_again(gmail, emulator):
    ids = message_ids(gmail, 20)
    emulator.faults.add("gmail.users.messages.get", 403, reason="userRateLimitExceeded", after=15)

    first = run_batch(gmail, ids)
    emulator.faults.clear()
    retry = run_batch(gmail, [i for i, (_, error) in first.items() if error is not None])

    assert len(retry) == 5 and all(error is None for _, error in retry.values())


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (429, None),
        (500, None),
        (503, None),
        (403, "userRateLimitExceeded"),
        (403, "rateLimitExceeded"),
    ],
)
def test_execute_with_retries_recovers_from_transient_faults(gmail, emulator, status, reason):
    emulator.faults.add("gmail.users.messages.list", status, times=3, retry_after=0, reason=reason)
    request = no_backoff(gmail.users().messages().list(userId="me", maxResults=1))

    page = request.execute(num_retries=3)

    assert len(page["messages"]) == 1
    assert emulator.log.count("gmail.users.messages.list") == 4
    assert len(request.sleeps) == 3


def test_retries_give_up_and_raise_the_last_error(gmail, emulator):
    emulator.faults.add("gmail.users.messages.list", 503)
    request = no_backoff(gmail.users().messages().list(userId="me"))

    with pytest.raises(HttpError) as error:
        request.execute(num_retries=2)

    assert error.value.status_code == 503
    assert emulator.log.count("gmail.users.messages.list") == 3


def test_a_delay_beyond_the_client_timeout_raises_a_timeout(emulator):
    gmail = build_service("gmail", "v1", emulator.url, timeout=1)
    emulator.faults.add_delay("gmail.users.getProfile", 3, times=1)

    started = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError)):
        gmail.users().getProfile(userId="me").execute()

    assert 0.9 < time.monotonic() - started < 2.5
    assert gmail.users().getProfile(userId="me").execute()["emailAddress"]


def test_a_fault_on_the_batch_route_fails_the_whole_batch(gmail, emulator):
    ids = message_ids(gmail, 3)
    emulator.faults.add("batch", 503, times=1)

    with pytest.raises(HttpError) as error:
        run_batch(gmail, ids)

    assert error.value.status_code == 503
    assert emulator.log.count("gmail.users.messages.get", http_only=False) == 0


def test_gmail_refuses_batches_of_more_than_100_calls(gmail):
    ids = message_ids(gmail, 101)

    with pytest.raises(HttpError) as error:
        run_batch(gmail, ids)

    assert error.value.status_code == 400


def test_latency_is_added_once_per_http_request_not_per_batch_part(gmail, emulator):
    ids = message_ids(gmail, 20)
    emulator.latency_s = 0.1

    started = time.monotonic()
    run_batch(gmail, ids, fmt="minimal")
    batch_s = time.monotonic() - started
    started = time.monotonic()
    gmail.users().getProfile(userId="me").execute()
    single_s = time.monotonic() - started

    # Per part it would take 20 x 0.1 = 2 s; the bound leaves room for a slow machine.
    assert 0.1 <= batch_s < 1.0
    assert 0.1 <= single_s < 0.3


def test_faults_count_matches_after_skipping_the_first_ones():
    faults = FaultSet(ROUTE_NAMES)
    rule = faults.add("gmail.users.messages.get", 500, times=2, after=1)

    fired = [faults.match("gmail.users.messages.get") is not None for _ in range(5)]

    assert fired == [False, True, True, False, False]
    assert (rule.seen, rule.hits) == (5, 2)
    assert faults.match("gmail.users.messages.list") is None


def test_the_fault_spec_grammar_builds_the_rules_it_describes():
    faults = FaultSet(ROUTE_NAMES)

    rules = faults.add_spec(
        "gmail.users.messages.get=429x3:retry_after=2,calendar.events.list=503x1,"
        "oauth.token=invalid_grant,gmail.users.messages.list=delay:seconds=5:after=2,"
        "gmail.users.history.list=404, batch=403:reason=rateLimitExceeded"
    )

    summary = [
        (r.route, r.status, r.times, r.after, r.retry_after, r.delay_s, r.reason) for r in rules
    ]
    assert summary == [
        ("gmail.users.messages.get", 429, 3, 0, 2.0, 0.0, None),
        ("calendar.events.list", 503, 1, 0, None, 0.0, None),
        ("oauth.token", "invalid_grant", None, 0, None, 0.0, None),
        ("gmail.users.messages.list", None, None, 2, None, 5.0, None),
        ("gmail.users.history.list", 404, None, 0, None, 0.0, None),
        ("batch", 403, None, 0, None, 0.0, "rateLimitExceeded"),
    ]


def test_a_rule_prints_back_as_the_spec_it_came_from():
    spec = (
        "gmail.users.messages.get=429x3:retry_after=2:after=1,"
        "oauth.token=invalid_grant,batch=delay:seconds=1.5"
    )

    rules = FaultSet(ROUTE_NAMES).add_spec(spec)

    assert ",".join(str(rule) for rule in rules) == spec


@pytest.mark.parametrize(
    "spec",
    [
        "gmail.users.messages.get",
        "no.such.route=429",
        "gmail.users.messages.get=418",
        "gmail.users.messages.get=429xmany",
        "gmail.users.messages.get=429:colour=red",
        "gmail.users.messages.get=delay",
        "gmail.users.messages.get=invalid_grant",
        "gmail.users.messages.get=429:retry_after=soon",
    ],
)
def test_a_bad_fault_spec_is_refused(spec):
    with pytest.raises(ValueError):
        FaultSet(ROUTE_NAMES).add_spec(spec)


def test_history_and_sync_faults_answer_like_expired_tokens(gmail, calendar, emulator):
    emulator.faults.add_spec("gmail.users.history.list=404x1,calendar.events.list=410x1")
    start = emulator.mailbox().history_id

    with pytest.raises(HttpError) as history:
        gmail.users().history().list(userId="me", startHistoryId=start).execute()
    with pytest.raises(HttpError) as events:
        calendar.events().list(calendarId="primary").execute()

    assert history.value.status_code == 404
    assert events.value.status_code == 410
    assert events.value.error_details[0]["reason"] == "fullSyncRequired"


def test_a_stopped_emulator_closes_kept_alive_connections(gmail, emulator):
    gmail.users().getProfile(userId="me").execute()

    emulator.stop()

    with pytest.raises((ConnectionError, OSError)):
        gmail.users().getProfile(userId="me").execute()
