"""Fuzz: hostile RFC 822 mail through the converter, the mbox import and the normalize job.

Every example writes one to three generated messages (MIME trees of any shape, nesting up to
1,500 deep, forwarded messages, base64 and quoted-printable that are not, charsets nobody knows,
RFC 2231 file names gone wrong, 8-bit and NUL bytes in headers, thousands of Received lines,
subjects of 300 kB) to an mbox file as Takeout does, imports it with mbox_import (which converts
with jobs.sync.convert and stores as the sync does), runs normalize_gmail and the stages after
it, and checks: the import and no job crash, every message is stored and becomes its
interaction, every attachment the resource names can be fetched back (and has the size it
says), and format=raw gives the message's bytes back.
"""

from __future__ import annotations

import base64
import re
import time
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.config import get_config
from jobs.models import RawEvent
from jobs.runner import run_due_jobs
from jobs.sync.convert import attachment_bytes, format_message, gmail_message_from_rfc822
from jobs.sync.imports import ImportFileError, mbox_import
from tests.chaos.fuzzing import DOWNSTREAM, check_interaction, check_jobs, print_figures, reset
from tests.chaos.strategies import FUZZ, rfc822_messages

pytestmark = pytest.mark.django_db

MESSAGES = st.integers(1, 3).flatmap(lambda n: st.tuples(*(rfc822_messages(i) for i in range(n))))
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)


@pytest.fixture
def inline(pipeline_config):
    pipeline_config(handoff="none")


def mbox(messages: tuple[bytes, ...]) -> bytes:
    """An mboxrd file as Takeout writes it: 'From ' lines inside a message are quoted."""
    return b"".join(
        b"From 1790000000000000@xxx Tue Mar 03 10:00:00 +0000 2026\n"
        + _FROM_LINE.sub(rb">\1", raw)
        + b"\n"
        for raw in messages
    )


def attachments(part: dict) -> list[tuple[str, int]]:
    body = part["body"]
    found = [(body["attachmentId"], body["size"])] if "attachmentId" in body else []
    for child in part.get("parts", []):
        found += attachments(child)
    return found


def test_hostile_mail_converts_imports_and_normalizes(user, account, inline, tmp_path):
    tally: Counter[str] = Counter()
    path = tmp_path / "fuzz.mbox"

    @FUZZ
    @given(messages=MESSAGES)
    def example(messages: tuple[bytes, ...]) -> None:
        reset(user)
        for raw in messages:
            full = gmail_message_from_rfc822(raw)
            for attachment, size in attachments(full["payload"]):
                # the size stored (counted without decoding, for clean base64) is the bytes' size
                data = attachment_bytes(raw, attachment, message_id=full["id"])
                assert data is not None and len(data) == size
            raw_form = format_message(full, raw, "raw")
            assert base64.urlsafe_b64decode(raw_form["raw"] + "==") == raw
        path.write_bytes(mbox(messages))
        tally.update(["examples"])
        tally.update({"bytes": sum(len(raw) for raw in messages)})

        # A NUL byte among the header fields is binary data, not mail: refused with that reason
        refused = [m for m in messages if b"\x00" in re.split(rb"\r?\n\r?\n", m, maxsplit=1)[0]]
        tally.update({"rejected": len(refused)})
        if len(refused) == len(messages):
            with pytest.raises(ImportFileError, match=r"holds no mail message: its .* rejected"):
                mbox_import(account=account, path=path)
            return

        result = mbox_import(account=account, path=path)

        assert (result.fetched, result.rejected) == (len(messages), len(refused)), result
        assert all(
            r.reason == "not a mail message: NUL bytes in its header" for r in result.rejections
        )
        assert result.next_job is not None
        run_due_jobs(kinds=["normalize_gmail", *DOWNSTREAM], until_empty=True)
        check_jobs(["normalize_gmail", "extract_contacts"])
        stored = list(RawEvent.objects.filter(user=user, batch_id=result.batch_id))
        assert len(stored) == len(messages) - len(refused)  # distinct Message-IDs: one row each
        max_chars = get_config().max_body_chars
        for raw_event in stored:
            assert (raw_event.status, raw_event.error) == ("normalized", ""), raw_event.error
            check_interaction(user, "gmail", raw_event.source_id, max_chars)
        tally.update(raw_event.status for raw_event in stored)

    started = time.monotonic()
    example()
    print_figures("rfc822", tally, started)
