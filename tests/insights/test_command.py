"""`manage.py insights <user>`: the user's insights only, by kind and status, as lines or JSON;
a one-line error and a non-zero exit for a user mistake."""

from __future__ import annotations

import json

import pytest
from django.core.management import ManagementUtility, call_command

from tests.insights.helpers import person, stored

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("insights", *args, stdout=out)
    return out.getvalue()


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """As from the shell: (exit status, stdout, stderr)."""
    status = 0
    try:
        ManagementUtility(["manage.py", "insights", *args]).execute()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_lists_the_users_open_insights_best_first(user, other_user):
    low = stored(user, "Relationship with Jane", kind="relationship_strength", score=40.0)
    high = stored(user, "Reply to Jane", score=80.0)
    stored(user, "Done already", status="done", score=99.0)
    stored(other_user, "Bob's own", score=95.0)

    out = run("ada")

    lines = out.splitlines()
    assert lines[0].split()[:4] == [str(high.pk), "awaiting_reply", "new", "80.0"]
    assert lines[0].endswith("Reply to Jane")
    assert lines[1].strip() == "Reply to Jane: summary"
    assert lines[2].split()[0] == str(low.pk)
    assert lines[-1] == "2 of 2 insight(s)"
    assert "Bob's own" not in out and "Done already" not in out


def test_json_with_kind_and_status(user, other_user):
    jane = person(user, "jane@acme.example", "Jane Doe")
    cold = stored(user, "Going cold: Jane", kind="going_cold", status="dismissed", contact=jane)
    stored(user, "Reply to Jane", status="dismissed")
    stored(other_user, "Going cold: Carl", kind="going_cold", status="dismissed")

    data = json.loads(run("ada", "--json", "--kind", "going_cold", "--status", "dismissed"))

    assert data["count"] == 1
    (item,) = data["insights"]
    assert (item["id"], item["kind"], item["status"]) == (cold.pk, "going_cold", "dismissed")
    assert item["contact"] == {"id": jane.pk, "name": "Jane Doe", "email": "jane@acme.example"}
    assert item["evidence"] == {"days_waiting": 4.5, "interaction_ids": [1, 2]}
    assert (item["summarySource"], item["llmFallbackReason"]) == ("heuristic", None)
    assert json.loads(run("ada", "--json", "--status", "all"))["count"] == 2


def test_nothing_to_show(user):
    assert run("ada").strip() == "no open insights"


def test_an_unknown_user_is_one_line_and_a_non_zero_exit(capsys, user):
    status, out, err = run_cli(capsys, "nobody")
    assert status == 1
    assert out == ""
    assert err.strip() == "CommandError: user 'nobody' does not exist"


def test_an_unknown_kind_or_status_is_refused(capsys, user):
    status, _, err = run_cli(capsys, "ada", "--kind", "cold")
    assert status == 2
    assert "argument --kind: invalid choice: 'cold'" in err
    status, _, err = run_cli(capsys, "ada", "--status", "closed")
    assert status == 2
    assert "argument --status: invalid choice: 'closed'" in err
