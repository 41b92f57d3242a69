"""Takeout imports: import_mbox and import_ics stream files into raw events, once."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from google_emulator.generator import generate_mailbox
from jobs.models import GoogleAccount, Interaction, Job, RawEvent
from jobs.sync.imports import ImportFileError, mbox_import
from tests.conftest import SHARED_CORPUS

pytestmark = pytest.mark.django_db

METRIC_KEYS = {
    "itemsFetched",
    "itemsInserted",
    "itemsSkipped",
    "durationMs",
    "userId",
    "batchId",
    "timedOut",
}

ICS = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//crm-pipeline tests//EN\r
BEGIN:VEVENT\r
UID:kickoff-1@northwind.example\r
DTSTAMP:20250301T120000Z\r
DTSTART:20250305T150000Z\r
DTEND:20250305T160000Z\r
SUMMARY:Kick-off with Northwind\r
ATTENDEE;CN=Dana Reyes:mailto:dana@northwind.example\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:dropped-2@northwind.example\r
DTSTAMP:20250301T120000Z\r
DTSTART:20250306T150000Z\r
DTEND:20250306T160000Z\r
SUMMARY:Dropped review\r
STATUS:CANCELLED\r
END:VEVENT\r
END:VCALENDAR\r
"""


@pytest.fixture(autouse=True)
def no_handoff(pipeline_config):
    pipeline_config(handoff="none")


@pytest.fixture
def account(user) -> GoogleAccount:
    return GoogleAccount.objects.create(user=user, email="ada@gmail.example")


@pytest.fixture
def mbox(tmp_path: Path) -> Path:
    """120 messages in Takeout form: a 'From ' line each, labels in X-Gmail-Labels (one Spam)."""
    generated = generate_mailbox(
        "ada@gmail.example", messages=120, events=0, seed=3, now=datetime(2025, 3, 1, tzinfo=UTC)
    )
    path = tmp_path / "All mail Including Spam and Trash.mbox"
    with path.open("wb") as handle:
        for n, message in enumerate(generated.messages):
            labels = b"Spam" if n == 0 else b"Inbox,Opened,Category Updates"
            body = b"\n".join(
                b">" + line if line.startswith(b"From ") else line
                for line in message.raw.replace(b"\r\n", b"\n").split(b"\n")
            )
            handle.write(b"From 1790000000000000000@xxx Sat Mar 01 12:00:00 +0000 2025\n")
            handle.write(b"X-GM-THRID: 17900000000000" + str(n).encode() + b"\n")
            handle.write(b"X-Gmail-Labels: " + labels + b"\n" + body + b"\n\n")
    return path


def run(command: str, *args: str) -> list[str]:
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip().splitlines()


def test_an_mbox_import_stores_each_message_once_and_ends_with_the_metrics_line(account, mbox):
    lines = run("import_mbox", "ada", str(mbox))

    metrics = json.loads(lines[-1])
    assert set(metrics) >= METRIC_KEYS
    assert metrics["itemsFetched"] == 120
    assert metrics["itemsInserted"] == 119  # the Spam message is excluded, as in a sync
    assert metrics["userId"] == account.user_id and metrics["timedOut"] is False
    rows = RawEvent.objects.filter(user_id=account.user_id, provider="gmail")
    assert rows.count() == 119
    assert {str(b) for b in rows.values_list("batch_id", flat=True)} == {metrics["batchId"]}
    row = rows.first()
    assert row.account_id == account.pk and row.occurred_at is not None
    assert set(row.payload["labelIds"]) == {"INBOX", "CATEGORY_UPDATES"}


def test_reimporting_the_same_mbox_inserts_nothing(account, mbox):
    run("import_mbox", "ada", str(mbox))

    metrics = json.loads(run("import_mbox", "ada", str(mbox))[-1])

    assert metrics["itemsInserted"] == 0
    assert metrics["itemsSkipped"] == 120
    assert metrics["details"]["itemsUpdated"] == 0


def test_the_mbox_is_stored_with_one_statement_per_chunk(account, mbox):
    with CaptureQueriesContext(connection) as small_chunks:
        assert mbox_import(account=account, path=mbox, chunk_size=50).counts.inserted == 119
    RawEvent.objects.all().delete()
    Job.objects.all().delete()
    with CaptureQueriesContext(connection) as one_chunk:
        assert mbox_import(account=account, path=mbox, chunk_size=500).counts.inserted == 119

    # 3 chunks instead of 1: two statements more, none per message.
    assert len(small_chunks) - len(one_chunk) == 2


def test_progress_is_reported_per_chunk(account, mbox):
    seen = []
    mbox_import(account=account, path=mbox, chunk_size=50, on_progress=seen.append)
    assert [p.items for p in seen] == [51, 101, 120]  # 50 stored + the excluded one, ...
    assert seen[-1].bytes_read > 0


def test_a_missing_file_or_a_non_mbox_is_a_clear_error(account, tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        run("import_mbox", "ada", str(tmp_path / "nope.mbox"))
    text = tmp_path / "notes.txt"
    text.write_text("Dear diary\n")
    with pytest.raises(CommandError, match="is not an mbox file"):
        run("import_mbox", "ada", str(text))
    with pytest.raises(ImportFileError, match="is not a file"):
        mbox_import(account=account, path=tmp_path)


def test_an_unknown_user_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match=r"^user 'nobody' does not exist$"):
        run("import_mbox", "nobody", str(tmp_path / "x.mbox"))


def test_the_import_starts_the_next_stage_for_its_batch(account, mbox, monkeypatch):
    # Any registered kind taking {"account_id"} stands in for the normalizer.
    monkeypatch.setattr("jobs.sync.imports.next_stage", lambda kind: "gmail_sync")

    result = mbox_import(account=account, path=mbox)

    job = Job.objects.get()
    assert job == result.next_job
    assert (job.kind, job.batch_id, job.payload["account_id"]) == (
        "gmail_sync",
        result.batch_id,
        account.pk,
    )


def test_an_ics_import_stores_events_on_the_primary_calendar_once(account, tmp_path):
    path = tmp_path / "ada@gmail.example.ics"
    path.write_bytes(ICS)

    first = json.loads(run("import_ics", "ada", str(path))[-1])
    again = json.loads(run("import_ics", "ada", str(path))[-1])

    assert (first["itemsFetched"], first["itemsInserted"]) == (2, 2)
    assert (again["itemsInserted"], again["itemsSkipped"]) == (0, 2)
    rows = RawEvent.objects.filter(provider="calendar").order_by("occurred_at")
    assert all(row.source_id.startswith("ada@gmail.example/") for row in rows)
    assert all(row.payload["_calendarId"] == "ada@gmail.example" for row in rows)
    assert [row.payload["status"] for row in rows] == ["confirmed", "cancelled"]


def test_a_file_that_is_not_icalendar_is_a_clear_error(account, mbox):
    with pytest.raises(CommandError, match="is not an iCalendar file"):
        run("import_ics", "ada", str(mbox))


# --- item 22: imports say what they dropped ------------------------------------------------

FOUR_EVENTS_TWO_WITHOUT_START = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//crm-pipeline tests//EN\r
BEGIN:VEVENT\r
UID:good-1@northwind.example\r
DTSTART:20250305T150000Z\r
SUMMARY:Kick-off\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:broken-start@northwind.example\r
DTSTART:next tuesday\r
SUMMARY:A start no reader understands\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:no-start@northwind.example\r
SUMMARY:No start at all\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:good-2@northwind.example\r
DTSTART;VALUE=DATE:20250306\r
SUMMARY:All day\r
END:VEVENT\r
END:VCALENDAR\r
"""


def run_lines(command: str, *args: str) -> tuple[list[str], list[str]]:
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue().strip().splitlines(), err.getvalue().strip().splitlines()


def test_item22_ics_events_without_a_valid_start_are_counted_as_rejected_with_the_reason(
    account, tmp_path
):
    path = tmp_path / "calendar.ics"
    path.write_bytes(FOUR_EVENTS_TWO_WITHOUT_START)

    lines = run("import_ics", "ada", str(path))

    assert lines[0].startswith("4 events: 2 inserted, 0 updated, 0 unchanged, 2 rejected;")
    assert lines[1] == "  rejected #2 (line 9): no valid DTSTART"
    assert lines[2] == "  rejected #3 (line 14): no valid DTSTART"
    metrics = json.loads(lines[-1])
    assert (metrics["itemsFetched"], metrics["itemsInserted"]) == (4, 2)
    assert metrics["details"]["itemsRejected"] == 2
    assert metrics["details"]["rejections"][0] == {
        "item": 2,
        "line": 9,
        "reason": "no valid DTSTART",
    }
    assert RawEvent.objects.filter(provider="calendar").count() == 2

    again = run("import_ics", "ada", str(path))
    assert again[0].startswith("4 events: 0 inserted, 0 updated, 2 unchanged, 2 rejected;")


def test_item22_a_truncated_ics_imports_what_is_complete_and_exits_non_zero(account, tmp_path):
    cut = FOUR_EVENTS_TWO_WITHOUT_START.index(b"SUMMARY:All day")
    path = tmp_path / "cut.ics"
    path.write_bytes(FOUR_EVENTS_TWO_WITHOUT_START[:cut])
    out = StringIO()

    with pytest.raises(CommandError, match=r"'.*cut\.ics' is truncated: it ends inside an item"):
        call_command("import_ics", "ada", str(path), stdout=out, stderr=StringIO())

    lines = out.getvalue().strip().splitlines()
    assert lines[0].startswith("4 events: 1 inserted, 0 updated, 0 unchanged, 3 rejected;")
    assert "  rejected #4 (line 18): the file ends inside this event (truncated?)" in lines
    assert json.loads(lines[-1])["details"]["complete"] is False
    assert RawEvent.objects.filter(provider="calendar").count() == 1


def test_item22_the_ics_is_read_one_event_at_a_time(account, tmp_path):
    from jobs.sync.convert import IcsReader

    events = b"".join(
        b"BEGIN:VEVENT\r\nUID:e%d@x\r\nDTSTART:20250305T150000Z\r\nDESCRIPTION:%s\r\nEND:VEVENT\r\n"
        % (n, b"x" * 60)
        for n in range(2000)
    )
    path = tmp_path / "big.ics"
    path.write_bytes(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + events + b"END:VCALENDAR\r\n")

    with path.open("rb") as handle:
        first = next(iter(IcsReader(handle)))
        assert first.resource is not None
        # the reader is at the first event, not at the end of the 230 KB file
        assert handle.tell() < path.stat().st_size // 4


def binary_mbox(tmp_path: Path, *, with_mail: bool) -> Path:
    import random

    noise = random.Random(22).randbytes(100_000).replace(b"\nFrom ", b"\nfrom ")
    path = tmp_path / "mixed.mbox"
    with path.open("wb") as handle:
        if with_mail:
            handle.write(
                b"From ada@gmail.example Sat Mar 01 12:00:00 2025\n"
                b"From: Dana <dana@northwind.example>\nTo: ada@gmail.example\n"
                b"Subject: hello\nMessage-ID: <one@northwind.example>\n\nHi Ada\n\n"
            )
        handle.write(b"From MAILER-DAEMON Sat Mar 01 12:00:00 2025\n" + noise + b"\n")
    return path


def test_item22_binary_data_after_a_from_line_is_rejected_not_stored(account, tmp_path):
    lines = run("import_mbox", "ada", str(binary_mbox(tmp_path, with_mail=True)))

    assert lines[0].startswith("2 messages: 1 inserted, 0 updated, 0 unchanged, 1 rejected;")
    assert lines[1].startswith("  rejected #2 (line 9): not a mail message")
    assert json.loads(lines[-1])["details"]["itemsRejected"] == 1
    assert RawEvent.objects.filter(provider="gmail").count() == 1


def test_item22_an_mbox_with_no_mail_message_is_an_error(account, tmp_path):
    with pytest.raises(CommandError, match=r"holds no mail message: its 1 entries were rejected"):
        run("import_mbox", "ada", str(binary_mbox(tmp_path, with_mail=False)))
    assert not RawEvent.objects.exists()


# --- item 20: re-importing the same mbox changes nothing ------------------------------------


def mbox_of(messages: list[bytes], path: Path, *, quoting: str = "mboxrd", dated=True) -> Path:
    """Write messages as an mbox: 'From ' lines without a date unless `dated`; body lines that
    look like separators quoted as mboxrd ('>' before '>*From ') or mboxo ('>' before 'From ')."""
    pattern = re.compile(rb"^(>*From )" if quoting == "mboxrd" else rb"^(From )", re.MULTILINE)
    with path.open("wb") as handle:
        for n, raw in enumerate(messages):
            stamp = b" Sat Mar  1 12:%02d:00 2025" % (n % 60) if dated else b""
            handle.write(b"From corpus@example" + stamp + b"\n")
            handle.write(pattern.sub(rb">\1", raw).rstrip(b"\r\n") + b"\n\n")
    return path


def corpus_messages() -> list[bytes]:
    from jobs.sync.convert import iter_mbox

    mail = SHARED_CORPUS / "mail"
    if not mail.is_dir():
        pytest.skip("shared corpus not found next to the repository")
    messages: list[bytes] = []
    for path in sorted(p for p in mail.iterdir() if p.is_file()):
        raw = path.read_bytes()
        messages += list(iter_mbox(path)) if raw.startswith(b"From ") else [raw]
    return messages


def test_item20_reimporting_the_shared_corpus_inserts_and_updates_nothing(account, tmp_path):
    messages = corpus_messages()
    path = mbox_of(messages, tmp_path / "corpus.mbox", dated=False)

    first = mbox_import(account=account, path=path)
    again = mbox_import(account=account, path=path)

    assert first.fetched == len(messages) and first.counts.inserted > 100
    assert (again.counts.inserted, again.counts.updated) == (0, 0)
    assert again.unchanged == first.counts.inserted
    # no two different messages share a row: each one read is stored or rejected
    assert first.rejected + first.excluded + first.counts.inserted == len(messages)


def test_item20_message_ids_do_not_depend_on_mbox_quoting(account, tmp_path):
    messages = [
        b"From: dana@northwind.example\nSubject: no message id\n\n"
        b"From the start\n>From a quote\n>>From deeper\nend\n",
        b"From: dana@northwind.example\r\nSubject: crlf\r\n\r\nFrom here\r\n",
    ]
    mbox_import(account=account, path=mbox_of(messages, tmp_path / "rd.mbox"))
    stored = set(RawEvent.objects.values_list("source_id", flat=True))

    again = mbox_import(
        account=account, path=mbox_of(messages, tmp_path / "o.mbox", quoting="mboxo")
    )

    assert len(stored) == 2
    assert again.counts.inserted == 0
    assert set(RawEvent.objects.values_list("source_id", flat=True)) == stored


def test_item20_undated_messages_take_the_from_line_date_else_an_estimated_marker(
    account, tmp_path
):
    from jobs.normalization.services import raw_events_normalize

    undated = [
        b"From: dana@northwind.example\nTo: ada@gmail.example\nSubject: one\n"
        b"Message-ID: <one@northwind.example>\n\nNo Date, no Received.\n",
        b"From: dana@northwind.example\nTo: ada@gmail.example\nSubject: two\n"
        b"Message-ID: <two@northwind.example>\nDate: not a date at all\n\nUnreadable Date.\n",
    ]
    dated = mbox_of(undated, tmp_path / "dated.mbox")
    undated_path = tmp_path / "undated.mbox"
    undated_path.write_bytes(
        b"From someone\nFrom: dana@northwind.example\nSubject: three\n"
        b"Message-ID: <three@northwind.example>\n\nNothing tells its date.\n"
    )

    first = [mbox_import(account=account, path=p) for p in (dated, undated_path)]
    again = [mbox_import(account=account, path=p) for p in (dated, undated_path)]
    raw_events_normalize(user_id=account.user_id, provider="gmail")

    assert [r.counts.inserted for r in first] == [2, 1]
    assert [(r.counts.inserted, r.counts.updated) for r in again] == [(0, 0), (0, 0)]
    rows = {row.payload["snippet"].split()[0]: row for row in RawEvent.objects.all()}
    from_line = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert rows["No"].occurred_at == from_line
    assert rows["Unreadable"].occurred_at == from_line.replace(minute=1)
    assert "_occurredAtEstimated" not in rows["No"].payload
    assert rows["Nothing"].payload["_occurredAtEstimated"] is True
    assert rows["Nothing"].payload["internalDate"] == "0"
    assert rows["Nothing"].occurred_at is None
    interactions = {i.subject: i for i in Interaction.objects.all()}
    assert interactions["one"].occurred_at == from_line
    assert not interactions["one"].occurred_at_estimated
    assert interactions["three"].occurred_at_estimated
    assert interactions["three"].occurred_at == rows["Nothing"].fetched_at


# --- item 21: an import needs no OAuth -------------------------------------------------------


def test_item21_a_user_without_google_access_is_told_about_address(user, mbox):
    with pytest.raises(CommandError, match=r"has no connected Google account: .*--address"):
        run("import_mbox", "ada", str(mbox))
    assert not GoogleAccount.objects.exists()


def test_item21_address_records_an_offline_account_that_is_never_synced(user, mbox, tmp_path):
    from jobs.errors import PermanentError
    from jobs.sync.common import sync_account
    from jobs.sync.enqueue import SyncTargetError, sync_accounts, sync_enqueue_all_accounts

    lines = run(
        "import_mbox",
        "ada",
        str(mbox),
        "--address",
        "Ada@Example.com",
        "--address",
        "ada@work.example",
    )
    ics = tmp_path / "cal.ics"
    ics.write_bytes(ICS)
    run("import_ics", "ada", str(ics), "--address", "ada@example.com")

    account = GoogleAccount.objects.get()
    assert (account.email, account.status) == ("ada@example.com", "offline")
    assert account.addresses == ["ada@example.com", "ada@work.example"]
    assert not account.refresh_token_encrypted and not account.access_token_encrypted
    assert json.loads(lines[-1])["itemsInserted"] == 119
    assert set(RawEvent.objects.values_list("account_id", flat=True)) == {account.pk}
    # never synced, refreshed or marked as needing re-authorisation
    assert sync_enqueue_all_accounts() == []
    with pytest.raises(SyncTargetError, match="no active Google account"):
        sync_accounts(user=user)
    with pytest.raises(PermanentError, match="is offline"):
        sync_account(account_id=account.pk, user_id=user.pk)
    account.refresh_from_db()
    assert account.status == "offline"
    # a later import without --address uses it
    again = json.loads(run("import_mbox", "ada", str(mbox))[-1])
    assert again["itemsInserted"] == 0 and again["details"]["itemsUnchanged"] == 119


def test_item21_a_connected_account_is_used_as_it_is(account, mbox):
    run(
        "import_mbox",
        "ada",
        str(mbox),
        "--address",
        "ada@gmail.example",
        "--address",
        "x@y.example",
    )

    account.refresh_from_db()
    assert account.status == "active" and account.addresses == []
    assert GoogleAccount.objects.count() == 1
    assert set(RawEvent.objects.values_list("account_id", flat=True)) == {account.pk}


def test_a_user_with_several_accounts_must_name_one(account, mbox):
    from jobs.google.accounts import google_account_connect

    google_account_connect(user=account.user, email="ada@work.example", refresh_token="1//x")

    with pytest.raises(CommandError, match=r"has several Google accounts .*--account"):
        run("import_mbox", "ada", str(mbox))
    assert not RawEvent.objects.exists()

    run("import_mbox", "ada", str(mbox), "--account", "ada@work.example")
    assert set(RawEvent.objects.values_list("account__email", flat=True)) == {"ada@work.example"}


def test_a_mistyped_path_records_no_offline_account(user, tmp_path):
    with pytest.raises(CommandError, match=r"does not exist"):
        run("import_mbox", "ada", str(tmp_path / "nope.mbox"), "--address", "ada@example.com")
    assert not GoogleAccount.objects.exists()


def test_item21_a_bad_address_is_a_clear_error(user, mbox):
    with pytest.raises(CommandError, match=r"^--address 'ada' is not an e-mail address$"):
        run("import_mbox", "ada", str(mbox), "--address", "ada")


def test_item16_imported_mail_is_outbound_by_its_sent_label_or_without_labels_by_address(
    user, tmp_path
):
    from jobs.normalization.services import raw_events_normalize

    path = tmp_path / "mixed.mbox"
    path.write_bytes(
        b"From x Sat Mar 01 12:00:00 2025\nFrom: ada@work.example\nTo: jo@client.example\n"
        b"Subject: plain, from my alias\n\nx\n\n"
        b"From x Sat Mar 01 12:01:00 2025\nFrom: jo@client.example\nTo: ada@example.com\n"
        b"Subject: plain, to me\n\nx\n\n"
        b"From x Sat Mar 01 12:02:00 2025\nX-Gmail-Labels: Sent\nFrom: ada@unknown-alias.example\n"
        b"To: jo@client.example\nSubject: takeout, sent\n\nx\n"
    )
    run(
        "import_mbox",
        "ada",
        str(path),
        "--address",
        "ada@example.com",
        "--address",
        "ada@work.example",
    )

    raw_events_normalize(user_id=user.pk, provider="gmail")

    assert dict(Interaction.objects.values_list("subject", "direction")) == {
        "plain, from my alias": "outbound",
        "plain, to me": "inbound",
        "takeout, sent": "outbound",
    }


def test_item22_streaming_keeps_the_calendar_time_zone_and_its_vtimezones(account, tmp_path):
    from jobs.sync.convert import IcsReader

    data = (
        b"BEGIN:VCALENDAR\r\nX-WR-TIMEZONE;VALUE=TEXT:US/Pacific\r\n"
        b"BEGIN:VTIMEZONE\r\nTZID:Office Time\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
        b"TZOFFSETFROM:+0530\r\nTZOFFSETTO:+0530\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
        b"BEGIN:VEVENT\r\nUID:floating@x\r\nDTSTART:20021028T012030\r\nEND:VEVENT\r\n"
        b"BEGIN:VEVENT\r\nUID:custom@x\r\nDTSTART;TZID=Office Time:20021028T012030\r\n"
        b"END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    path = tmp_path / "zones.ics"
    path.write_bytes(data)

    with path.open("rb") as handle:
        floating, custom = [item.resource for item in IcsReader(handle)]

    assert floating["start"] == {"dateTime": "2002-10-28T01:20:30-08:00", "timeZone": "US/Pacific"}
    assert custom["start"]["dateTime"] == "2002-10-28T01:20:30+05:30"
