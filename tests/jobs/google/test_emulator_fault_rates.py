"""Item 23: faults given as percentages, seeded, with reset and stall among the kinds."""

from __future__ import annotations

import socket
from collections import Counter

import httplib2
import pytest

from google_emulator.client import build_service
from google_emulator.faults import FaultSet
from google_emulator.server import ROUTE_NAMES

GET = "gmail.users.messages.get"


def draws(seed: int, count: int = 2000) -> list[object]:
    faults = FaultSet(ROUTE_NAMES, seed=seed)
    faults.add_spec("messages.get=30%:429,500,503,reset,stall")
    return [hit.kind if (hit := faults.match(GET)) else None for _ in range(count)]


def test_item23_a_percentage_spec_is_one_rule_with_its_kinds():
    faults = FaultSet(ROUTE_NAMES)

    rules = faults.add_spec(
        "messages.get=30%:429,500,503,reset,stall:seconds=2,"
        "calendar.events.list=503x1,messages.list=5%:503:retry_after=1"
    )

    routes = [rule.route for rule in rules]
    assert routes == [GET, "calendar.events.list", "gmail.users.messages.list"]
    assert rules[0].probability == pytest.approx(0.3)
    assert rules[0].kinds == (429, 500, 503, "reset", "stall")
    assert rules[1].probability is None and rules[1].times == 1
    assert rules[2].kinds == (503,) and rules[2].retry_after == 1
    assert [str(rule) for rule in rules] == [
        "gmail.users.messages.get=30%:429,500,503,reset,stall:seconds=2",
        "calendar.events.list=503x1",
        "gmail.users.messages.list=5%:503:retry_after=1",
    ]


def test_item23_the_draws_are_reproducible_and_near_the_percentage():
    first, again, other = draws(seed=4), draws(seed=4), draws(seed=5)

    assert first == again
    assert first != other
    kinds = Counter(kind for kind in first if kind is not None)
    assert 0.26 <= sum(kinds.values()) / len(first) <= 0.34
    assert set(kinds) == {429, 500, 503, "reset", "stall"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("messages.get=30%", "expected ROUTE=PERCENT%:KIND"),
        ("messages.get=0%:503", "percent must be in (0, 100]"),
        ("messages.get=150%:503", "percent must be in (0, 100]"),
        ("messages.get=abc%:503", "PERCENT must be a number"),
        ("messages.get=30%:418", "unsupported fault status 418"),
        ("get=30%:503", "unknown route 'get'"),
    ],
)
def test_item23_bad_percentage_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FaultSet(ROUTE_NAMES).add_spec(spec)


def test_item23_a_reset_drops_the_connection_without_an_answer(emulator):
    emulator.faults.add_spec("users.getProfile=100%:reset")
    gmail = build_service("gmail", "v1", emulator.url, timeout=5)

    with pytest.raises((ConnectionError, httplib2.HttpLib2Error, OSError)):
        gmail.users().getProfile(userId="me").execute()
    assert emulator.log[0].status == 0


def test_item23_a_reset_inside_a_batch_drops_the_whole_request(emulator, gmail):
    ids = [m["id"] for m in gmail.users().messages().list(userId="me").execute()["messages"]]
    emulator.faults.add("gmail.users.messages.get", "reset", times=1, after=3)
    batch = gmail.new_batch_http_request()
    for message_id in ids[:5]:
        batch.add(gmail.users().messages().get(userId="me", id=message_id))

    with pytest.raises((ConnectionError, httplib2.HttpLib2Error, OSError)):
        batch.execute()


def test_item23_a_stall_answers_nothing_until_the_client_gives_up(emulator):
    emulator.faults.add_spec("users.getProfile=100%:stall:seconds=3")
    gmail = build_service("gmail", "v1", emulator.url, timeout=0.5)

    with pytest.raises((TimeoutError, socket.timeout, OSError)):
        gmail.users().getProfile(userId="me").execute()


def test_issue12_injected_faults_are_counted_per_route_and_kind():
    faults = FaultSet(ROUTE_NAMES, seed=4)
    faults.add_spec("messages.get=30%:429,500,503,reset,stall,calendar.events.list=503x2")

    drawn = Counter(hit.kind for _ in range(500) if (hit := faults.match(GET)))
    for _ in range(5):
        faults.match("calendar.events.list")

    counted = faults.kind_hits()
    assert counted[GET] == {str(kind): n for kind, n in drawn.items()}
    assert sum(counted[GET].values()) == faults.rules[0].hits
    assert counted["calendar.events.list"] == {"503": 2}
