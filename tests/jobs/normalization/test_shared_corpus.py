"""Real-world mail and iCalendar files from the shared corpus through convert and the parsers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobs.normalization.calendar import parse_calendar_event
from jobs.normalization.gmail import parse_gmail_message
from jobs.normalization.types import NormalizationError, ParsedInteraction
from jobs.sync.convert import (
    calendar_events_from_ics,
    gmail_message_from_rfc822,
    iter_mbox,
)

CORPUS = (Path(__file__).resolve().parents[3] / ".." / "shared" / "corpus").resolve()
if not (CORPUS / "mail").is_dir() or not (CORPUS / "ics").is_dir():
    pytest.skip("shared corpus not found next to the repository", allow_module_level=True)

MAIL = sorted(p for p in (CORPUS / "mail").iterdir() if p.is_file())
ICS = sorted(p for p in (CORPUS / "ics").iterdir() if p.is_file())
FETCHED_AT = datetime(2026, 1, 1, tzinfo=UTC)
OWN = frozenset({"me@example.com"})


def messages_of(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    return list(iter_mbox(path)) if raw.startswith(b"From ") else [raw]


def normalize_mail(path: Path) -> list[ParsedInteraction | NormalizationError]:
    results: list[ParsedInteraction | NormalizationError] = []
    for raw in messages_of(path):
        try:
            full = gmail_message_from_rfc822(raw, internal_date_ms=0)
            results.append(parse_gmail_message(full, own_addresses=OWN, fetched_at=FETCHED_AT))
        except NormalizationError as error:
            results.append(error)
    return results


def normalize_ics(path: Path) -> list[ParsedInteraction | NormalizationError]:
    results: list[ParsedInteraction | NormalizationError] = []
    for event in calendar_events_from_ics(path.read_bytes(), calendar_id="me@example.com"):
        try:
            results.append(
                parse_calendar_event(
                    event, calendar_id="me@example.com", own_addresses=OWN, fetched_at=FETCHED_AT
                )
            )
        except NormalizationError as error:
            results.append(error)
    return results


@pytest.mark.parametrize("path", MAIL, ids=[p.name for p in MAIL])
def test_shared_mail_file_normalizes_without_crashing(path: Path) -> None:
    for result in normalize_mail(path):
        if isinstance(result, ParsedInteraction):
            json.dumps(result.metadata)
            assert "\x00" not in result.body_text


@pytest.mark.parametrize("path", ICS, ids=[p.name for p in ICS])
def test_shared_ics_file_normalizes_without_crashing(path: Path) -> None:
    for result in normalize_ics(path):
        if isinstance(result, ParsedInteraction):
            json.dumps(result.metadata)
            assert result.kind == "meeting"


def test_nearly_all_shared_mail_yields_interactions() -> None:
    results = [result for path in MAIL for result in normalize_mail(path)]
    interactions = [r for r in results if isinstance(r, ParsedInteraction)]
    # measured: 111 files hold 116 messages (two mbox files), and every one normalizes
    assert len(MAIL) >= 111
    assert len(results) >= 116
    assert len(interactions) >= 116
    assert sum(len(messages_of(p)) > 1 for p in MAIL) >= 2
    with_body = [i for i in interactions if i.metadata["body_source"] in ("plain", "html")]
    assert len(with_body) >= 100


def test_nearly_all_shared_ics_files_yield_meetings() -> None:
    per_file = {path.name: normalize_ics(path) for path in ICS}
    interactions = [r for rs in per_file.values() for r in rs if isinstance(r, ParsedInteraction)]
    # measured: 131 events from 32 of 35 files; the other three hold only VTODO / VFREEBUSY
    assert len(interactions) >= 131
    assert sum(bool(results) for results in per_file.values()) >= 32
    assert any(i.metadata["all_day"] for i in interactions)
    assert any(i.metadata["recurring_event_id"] for i in interactions)
    assert any(i.metadata["cancelled"] for i in interactions)
