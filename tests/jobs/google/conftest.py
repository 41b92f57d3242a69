"""Fixtures for the Google emulator tests: a running emulator and real client services for it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from googleapiclient.discovery import Resource

from jobs.google.emulator.client import build_service
from jobs.google.emulator.generator import GeneratedMailbox, generate_mailbox
from jobs.google.emulator.server import GoogleEmulator

OWNER = "alex.morgan@pipeline.example"
ALIAS = "alex@pipeline.example"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def generated_mailbox() -> GeneratedMailbox:
    """300 messages and 40 calendar entries, the same in every test (seed 7, fixed now)."""
    return generate_mailbox(OWNER, messages=300, events=40, seed=7, now=NOW, aliases=(ALIAS,))


@pytest.fixture
def emulator(generated_mailbox: GeneratedMailbox) -> Iterator[GoogleEmulator]:
    """A running emulator serving OWNER's generated mailbox (lax tokens, no latency)."""
    with GoogleEmulator() as emu:
        emu.add_mailbox(OWNER, generated_mailbox)
        yield emu


@pytest.fixture
def gmail(emulator: GoogleEmulator) -> Resource:
    return build_service("gmail", "v1", emulator.url, timeout=5)


@pytest.fixture
def calendar(emulator: GoogleEmulator) -> Resource:
    return build_service("calendar", "v3", emulator.url, timeout=5)
