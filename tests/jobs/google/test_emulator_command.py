"""The google_emulator management command: options, startup output, clean errors."""

from __future__ import annotations

import io
import re

import httplib2
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from google.auth.transport.requests import Request
from google.oauth2.credentials import Credentials
from googleapiclient.errors import HttpError

from google_emulator.client import build_service
from google_emulator.generator import make_message
from google_emulator.management.commands.google_emulator import Command

OWNER = "demo@pipeline.example"


def run_command(monkeypatch, *args: str, while_running) -> str:
    """Run the command; `while_running(url, output)` runs while it serves, then Ctrl-C."""
    out = io.StringIO()

    def interrupt_after_checks(command: Command) -> None:
        while_running(re.search(r"ready (\S+)", out.getvalue()).group(1), out.getvalue())
        raise KeyboardInterrupt

    monkeypatch.setattr(Command, "wait", interrupt_after_checks)
    call_command("google_emulator", "--port", "0", *args, stdout=out)
    return out.getvalue()


def test_it_serves_a_generated_mailbox_with_faults_until_interrupted(monkeypatch):
    seen = {}

    def check(url: str, output: str) -> None:
        gmail = build_service("gmail", "v1", url)
        seen["profile"] = gmail.users().getProfile(userId="me").execute()
        with pytest.raises(HttpError) as error:
            gmail.users().messages().list(userId="me").execute()
        seen["fault"] = error.value.status_code
        seen["listed"] = len(gmail.users().messages().list(userId="me").execute()["messages"])
        seen["events"] = (
            build_service("calendar", "v3", url).events().list(calendarId="primary").execute()
        )

    output = run_command(
        monkeypatch,
        "--generate",
        "60",
        "--events",
        "5",
        "--owner",
        OWNER,
        "--seed",
        "2",
        "--faults",
        "gmail.users.messages.list=503x1",
        "--latency-ms",
        "1",
        while_running=check,
    )

    assert seen["profile"]["emailAddress"] == OWNER and seen["profile"]["messagesTotal"] == 60
    assert seen["fault"] == 503 and seen["listed"] > 0
    assert seen["events"]["items"]
    assert f"account {OWNER}: 60 messages" in output and output.rstrip().endswith("stopping")
    assert "quota per minute (sliding): Gmail 6,000 units per user" in output


def test_it_loads_mbox_and_ics_files_and_hands_out_a_refresh_token(monkeypatch, tmp_path):
    mbox = tmp_path / "mail.mbox"
    mbox.write_bytes(
        b"From x@y Sat Mar 01 12:00:00 2025\n"
        + make_message(from_="a@b.example", to=OWNER, subject="Hi").raw
    )
    ics = tmp_path / "cal.ics"
    ics.write_bytes(
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:1@example.com\r\n"
        b"DTSTART:20250303T100000Z\r\nDTEND:20250303T110000Z\r\nSUMMARY:Review\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    seen = {}

    def check(url: str, output: str) -> None:
        refresh_token = re.search(r"refresh token for \S+: (\S+)", output).group(1)
        credentials = Credentials(
            None,
            refresh_token=refresh_token,
            token_uri=url + "token",
            client_id="c",
            client_secret="s",
        )
        credentials.refresh(Request())
        gmail = build_service("gmail", "v1", url, credentials=credentials)
        calendar = build_service("calendar", "v3", url, credentials=credentials)
        seen["messages"] = gmail.users().getProfile(userId="me").execute()["messagesTotal"]
        seen["events"] = [
            e["summary"] for e in calendar.events().list(calendarId="primary").execute()["items"]
        ]
        seen["anonymous"] = (
            httplib2.Http(timeout=5).request(url + "gmail/v1/users/me/profile")[0].status
        )

    run_command(
        monkeypatch,
        "--owner",
        OWNER,
        "--mbox",
        str(mbox),
        "--ics",
        str(ics),
        "--require-token",
        while_running=check,
    )

    assert seen == {"messages": 1, "events": ["Review"], "anonymous": 401}


def test_item23_it_serves_several_accounts_each_token_for_its_own(monkeypatch):
    seen = {}

    def check(url: str, output: str) -> None:
        tokens = dict(re.findall(r"refresh token for (\S+): (\S+)", output))
        for email, refresh_token in tokens.items():
            credentials = Credentials(
                None,
                refresh_token=refresh_token,
                token_uri=url + "token",
                client_id="c",
                client_secret="s",
            )
            gmail = build_service("gmail", "v1", url, credentials=credentials)
            seen[email] = gmail.users().getProfile(userId="me").execute()["emailAddress"]

    output = run_command(
        monkeypatch,
        "--owner",
        OWNER,
        "--account",
        "sam@pipeline.example",
        "--generate",
        "20",
        "--events",
        "2",
        "--require-token",
        while_running=check,
    )

    assert seen == {OWNER: OWNER, "sam@pipeline.example": "sam@pipeline.example"}
    assert f"account {OWNER}: 20 messages" in output
    assert "account sam@pipeline.example: 20 messages" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mbox", "missing.mbox"], "no such file: missing.mbox"),
        (["--ics", "missing.ics"], "no such file: missing.ics"),
        (["--faults", "gmail.users.messages.get=teapot"], "--faults:"),
        (["--generate", "-1"], "must not be negative"),
        (["--part-latency-ms", "-1"], "--part-latency-ms must not be negative"),
        (["--part-concurrency", "0"], "--part-concurrency must be at least 1"),
    ],
)
def test_bad_input_is_a_command_error(args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("google_emulator", "--port", "0", *args, stdout=io.StringIO())


def test_the_help_documents_the_fault_grammar():
    help_text = Command().create_parser("manage.py", "google_emulator").format_help()

    assert "ROUTE=KIND[xTIMES][:KEY=VALUE...]" in help_text
    assert "gmail.users.messages.get=429x3:retry_after=2" in help_text
