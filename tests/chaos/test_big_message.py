"""A 25 MB message (Gmail's size limit) is converted, stored and normalized with bounded memory.

The message is what such mail is: a short text and HTML body and one large attachment (random,
so incompressible bytes, base64 in the mail), 25 MB in all. Three runs, each in a fresh
subprocess, which resets its peak RSS (VmHWM, through /proc/self/clear_refs) once Django, the
imports and the database connection are warm (baseline: VmRSS then) and reads the peak after
the work:

- normalize, as the Gmail sync stores it: the format=full resource names the attachment by its
  attachmentId and carries no attachment bytes (Gmail serves them from
  messages.attachments.get, which the sync never calls); the bodies are inline.
- normalize, the same bytes as an inline part: an attachment without a file name or an
  attachment disposition (an inline image) is a part whose data is in the resource, so the
  stored payload is ~33 MB of base64url; the normalizer reads it and never decodes it.
- import: mbox_import of the message as a Takeout mbox (conversion and store), the heaviest path:
  the whole message is parsed, and the attachment decoded once to learn its size.

Prints FIGURES with the message size and each run's baseline, peak and growth in MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import uuid

import pytest

from jobs.models import Interaction, RawEvent
from jobs.sync.convert import gmail_message_from_rfc822
from jobs.sync.gmail import message_item
from jobs.sync.raw_events import raw_events_upsert
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024
SIZE = int(os.environ.get("CRM_BIG_MESSAGE_BYTES", 25_000_000))  # Gmail's limit: 25 MB
# Bounds on peak RSS growth, as multiples of the message size (justified in ops-fuzz.md):
# normalizing a stored resource holds the payload's JSON text and the dict parsed from it, both
# about the stored size, and decodes at most max_body_chars of any body; the import holds the
# bytes, the parsed message, the decoded attachment and the base64 of the bodies it keeps.
NORMALIZE_ATTACHMENT_BOUND_MB = 20  # the stored resource is small: growth must not scale
NORMALIZE_INLINE_BOUND = 5.0  # measured 3.9
IMPORT_BOUND = 6.0  # measured 4.8 (10.3 before the converter fed its parser in slices)

TEXT = (
    "Hi Ada,\n\nplease find the signed contract and the scans attached. The figures are on page "
    "4; tell me if anything is off before Friday.\n\nBest,\nGrace\n"
)


def big_message(*, inline: bool) -> bytes:
    """RFC 822 bytes of about SIZE: text + HTML alternative + one base64 attachment."""
    head = (
        b"From: Grace Hopper <grace@navy.example>\r\n"
        b"To: Ada Lovelace <alex.morgan@pipeline.example>\r\n"
        b"Subject: Contract and scans\r\n"
        b"Date: Tue, 3 Mar 2026 10:00:00 +0000\r\n"
        b"Message-ID: <big-%s@navy.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"--outer\r\n"
        b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n"
        b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>%s</p>\r\n"
        b"--alt--\r\n"
        b"--outer\r\n"
    ) % (b"inline" if inline else b"attached", TEXT.encode(), TEXT.encode())
    if inline:
        part = b"Content-Type: image/jpeg\r\nContent-Disposition: inline\r\n"
    else:
        part = (
            b'Content-Type: application/pdf; name="scans.pdf"\r\n'
            b'Content-Disposition: attachment; filename="scans.pdf"\r\n'
        )
    part += b"Content-Transfer-Encoding: base64\r\n\r\n"
    tail = b"\r\n--outer--\r\n"
    # base64 lines of 76 chars + CRLF carry 57 bytes
    binary = os.urandom((SIZE - len(head) - len(part) - len(tail)) // 78 * 57)
    encoded = b"\r\n".join(
        __import__("base64").b64encode(binary[i : i + 57]) for i in range(0, len(binary), 57)
    )
    return head + part + encoded + tail


CHILD = textwrap.dedent(
    """
    import json, sys
    import django
    django.setup()
    from django.db import connection
    from jobs.models import GoogleAccount
    from jobs.normalization.services import raw_events_normalize
    from jobs.sync.imports import mbox_import

    def status_mb(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
        raise LookupError(field)

    def reset_peak():
        # Linux: writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS, so the
        # peak measured is this work's, not django.setup()'s
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")

    mode, user_id, arg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    account = GoogleAccount.objects.get(user_id=user_id)
    # warm: the normalizer's code path (no calendar event is pending), the converter on a small
    # message; the baseline is taken after them
    raw_events_normalize(user_id=user_id, provider="calendar")
    from jobs.sync.convert import gmail_message_from_rfc822
    gmail_message_from_rfc822(b"From: a@b.c\\r\\nSubject: warm\\r\\n\\r\\nhi\\r\\n")
    connection.ensure_connection()
    import gc
    gc.collect()
    reset_peak()
    baseline = status_mb("VmRSS")
    assert status_mb("VmHWM") <= baseline + 1, "the peak was not reset"
    if mode == "normalize":
        report = raw_events_normalize(user_id=user_id, provider="gmail")
        done = report.as_dict()
    else:
        result = mbox_import(account=account, path=arg)
        done = {"fetched": result.fetched, "inserted": result.counts.inserted}
    peak = status_mb("VmHWM")
    print("CHILD " + json.dumps({"baseline_mb": round(baseline, 1), "peak_mb": round(peak, 1),
                                 "growth_mb": round(peak - baseline, 1), "done": done}))
    """
)


def run_child(mode: str, user_id: int, arg: str = "-") -> dict:
    out = subprocess.run(
        [PYTHON, "-c", CHILD, mode, str(user_id), arg],
        env=subprocess_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [line for line in out.stdout.splitlines() if line.startswith("CHILD ")]
    return json.loads(line[len("CHILD ") :])


def store(user, account, raw: bytes) -> int:
    """Store the message as the Gmail sync does (format=full, raw_events_upsert); payload bytes."""
    full = gmail_message_from_rfc822(raw)
    raw_events_upsert(
        user_id=user.pk,
        account_id=account.pk,
        provider="gmail",
        batch_id=uuid.uuid4(),
        items=[message_item(full)],
    )
    return len(json.dumps(full))


def test_a_25_mb_message_is_normalized_and_imported_with_bounded_memory(user, account, tmp_path):
    figures: dict = {"message_bytes": SIZE}

    raw = big_message(inline=False)
    figures["attachment_payload_bytes"] = store(user, account, raw)
    attached = run_child("normalize", user.pk)
    assert attached["done"]["itemsInserted"] == 1
    figures["normalize_attachment"] = attached

    inline = big_message(inline=True)
    figures["inline_payload_bytes"] = store(user, account, inline)
    inlined = run_child("normalize", user.pk)
    assert inlined["done"]["itemsInserted"] == 1
    figures["normalize_inline"] = inlined

    path = tmp_path / "big.mbox"
    path.write_bytes(b"From 1790000000000000@xxx Tue Mar 03 10:00:00 +0000 2026\n" + raw + b"\n")
    RawEvent.objects.filter(user=user).delete()
    imported = run_child("import", user.pk, str(path))
    assert imported["done"] == {"fetched": 1, "inserted": 1}
    figures["import"] = imported

    for name in ("normalize_attachment", "normalize_inline", "import"):
        figures[name]["growth_x_message"] = round(figures[name]["growth_mb"] * MB / SIZE, 2)
    print("FIGURES: " + json.dumps(figures))

    emails = Interaction.objects.filter(user=user, subject="Contract and scans")
    assert {e.body_text for e in emails} == {TEXT.strip()}
    assert attached["growth_mb"] < NORMALIZE_ATTACHMENT_BOUND_MB
    assert inlined["growth_mb"] * MB < NORMALIZE_INLINE_BOUND * SIZE
    assert imported["growth_mb"] * MB < IMPORT_BOUND * SIZE
