"""The optional LLM against the local OpenAI-compatible stand-in (real HTTP): phrased when the
reply is valid; otherwise the heuristic text stands and the insight says why."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from insights.llm import InvalidOutput, validate_reply
from insights.models import Insight
from insights.rules.base import Candidate, fingerprint
from insights.services import (
    InsightsReport,
    Resume,
    insight_llm_record,
    insights_generate,
    insights_store,
)
from tests.insights.helpers import DAY, NOW, config, mail, person

pytestmark = pytest.mark.django_db

QUESTION = "Could you send the signed contract?"


@pytest.fixture
def llm(settings, openai_server):
    """Point the insights LLM at the stand-in, for awaiting-reply insights only (the crafted
    mail also makes a weekly digest); returns a function to change more settings."""

    def configure(**overrides):
        settings.CRM_PIPELINE_INSIGHTS = {
            "llm_base_url": openai_server.base_url,
            "llm_timeout_s": 1,
            "llm_max_retries": 0,
            "llm_kinds": ["awaiting_reply"],
            **overrides,
        }

    configure()
    return configure


@pytest.fixture
def asking(user):
    """One thread awaiting a reply (the only insight of a kind the LLM phrases)."""
    jane = person(user, "jane@acme.example", "Jane Doe")
    return mail(
        user,
        jane,
        at=NOW - 5 * DAY,
        thread="th-1",
        subject="Contract",
        body=f"{QUESTION}\n\nOn Mon, Ada wrote:\n> Here is the draft. Anything else?",
    )


def facts_of(request: dict) -> dict:
    return json.loads(request["messages"][1]["content"])


def good_reply(request: dict) -> str:
    message = facts_of(request)["messages"][0]
    return json.dumps(
        {
            "summary": "Jane is waiting for the signed contract since Friday.",
            "open_questions": [
                {
                    "text": "Send Jane the signed contract",
                    "interaction_id": message["interaction_id"],
                }
            ],
        }
    )


def generate(user, now=NOW) -> InsightsReport:
    report = InsightsReport()
    assert insights_generate(user_id=user.pk, now=now, report=report) is None
    return report


def awaiting(user) -> Insight:
    return Insight.objects.get(user=user, kind="awaiting_reply")


def test_a_valid_reply_phrases_the_summary_and_its_open_questions(user, asking, llm, openai_server):
    openai_server.chat_handler = good_reply

    report = generate(user)

    insight = awaiting(user)
    assert insight.summary_source == "llm"
    assert insight.summary == "Jane is waiting for the signed contract since Friday."
    assert insight.open_questions == [
        {"text": "Send Jane the signed contract", "interaction_id": asking.pk}
    ]
    assert insight.llm_fallback_reason is None
    assert insight.heuristic_summary.startswith("Jane Doe asked 1 question")
    assert (report.llm_calls, report.llm_phrased) == (1, 1)

    (request,) = [r.body for r in openai_server.requests if r.path.endswith("chat/completions")]
    assert request["model"] == "gpt-4o-mini"
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"]["required"] == [
        "summary",
        "open_questions",
    ]
    facts = facts_of(request)
    assert facts["kind"] == "awaiting_reply"
    assert facts["evidence"]["unanswered_ids"] == [asking.pk]
    # the message as its sender wrote it: the quoted draft is not sent
    assert facts["messages"] == [
        {
            "interaction_id": asking.pk,
            "kind": "email_inbound",
            "occurred_at": asking.occurred_at.isoformat(),
            "subject": "Contract",
            "text": QUESTION,
        }
    ]


def test_unchanged_content_is_not_sent_again(user, asking, llm, openai_server):
    openai_server.chat_handler = good_reply
    generate(user)
    # a day later the days waiting change, the material content does not
    report = generate(user, now=NOW + DAY)

    assert openai_server.count("chat/completions") == 1
    assert report.llm_calls == 0
    insight = awaiting(user)
    assert insight.summary_source == "llm"
    assert insight.evidence["days_waiting"] == 6.0


def test_an_invalid_reply_falls_back_and_says_so(user, asking, llm, openai_server):
    openai_server.chat_handler = lambda request: "Sure! Jane wants the contract."

    report = generate(user)

    insight = awaiting(user)
    assert insight.summary_source == "heuristic"
    assert insight.summary == insight.heuristic_summary
    assert insight.open_questions == [{"text": QUESTION, "interaction_id": asking.pk}]
    assert insight.llm_fallback_reason.startswith("invalid_output: not JSON (Expecting value")
    assert report.llm_fallbacks == {"invalid_output": 1}
    # an invalid answer is not asked again for the same content
    generate(user)
    assert openai_server.count("chat/completions") == 1


def test_a_reply_that_breaks_the_schema_falls_back(user, asking, llm, openai_server):
    openai_server.chat_handler = lambda request: json.dumps(
        {
            "summary": "Reply to Jane.",
            "open_questions": [{"text": "Contract?", "interaction_id": 999999}],
        }
    )

    generate(user)

    insight = awaiting(user)
    assert insight.summary_source == "heuristic"
    assert insight.llm_fallback_reason == (
        "invalid_output: open_questions[0].interaction_id 999999 is not one of the messages given"
    )


def test_a_timeout_falls_back_and_is_retried_next_run(user, asking, llm, openai_server):
    openai_server.chat_handler = good_reply
    openai_server.stall_next(1, seconds=2.5)

    generate(user)

    insight = awaiting(user)
    assert (insight.summary_source, insight.llm_fallback_reason) == ("heuristic", "timeout")
    assert insight.summary == insight.heuristic_summary

    generate(user)
    insight = awaiting(user)
    assert (insight.summary_source, insight.llm_fallback_reason) == ("llm", None)
    assert openai_server.count("chat/completions") == 2


def test_an_http_error_falls_back_with_the_error_and_never_the_key(
    user, asking, llm, openai_server, monkeypatch
):
    monkeypatch.setenv("INSIGHTS_TEST_KEY", "sk-test-secret-123456")
    llm(llm_api_key_env="INSIGHTS_TEST_KEY")
    openai_server.api_key = "sk-another-key"

    generate(user)

    reason = awaiting(user).llm_fallback_reason
    assert reason.startswith("error: POST ") and "HTTP 401" in reason
    assert "sk-test-secret-123456" not in reason


def test_no_configuration_keeps_the_heuristic_and_records_not_configured(
    user, asking, settings, openai_server
):
    settings.CRM_PIPELINE_INSIGHTS = {}

    generate(user)

    insight = awaiting(user)
    assert (insight.summary_source, insight.llm_fallback_reason) == ("heuristic", "not_configured")
    assert openai_server.count("chat/completions") == 0


def test_a_run_stops_calling_a_failing_endpoint(user, llm, openai_server):
    llm(llm_max_consecutive_failures=2)
    jane = person(user, "jane@acme.example", "Jane Doe")
    for n in range(4):
        mail(user, jane, at=NOW - (5 + n) * DAY, thread=f"th-{n}", body="Can you call me?")
    openai_server.fail_next(10, status=503)

    report = generate(user)

    assert openai_server.count("chat/completions") == 2
    reasons = sorted(
        Insight.objects.filter(user=user, kind="awaiting_reply").values_list(
            "llm_fallback_reason", flat=True
        )
    )
    failed = f"error: POST {openai_server.base_url}/chat/completions: HTTP 503: stand-in fault 503"
    skipped = f"error: not attempted: the LLM endpoint failed 2 times in a row (last: {failed})"
    assert reasons == [failed, failed, skipped, skipped]
    assert report.llm_fallbacks == {"error": 2, "skipped": 2}


def test_the_llm_phase_stops_at_the_deadline_and_says_where_to_go_on(user, llm, openai_server):
    openai_server.chat_handler = good_reply
    jane = person(user, "jane@acme.example", "Jane Doe")
    for n in range(3):
        mail(user, jane, at=NOW - (5 + n) * DAY, thread=f"th-{n}", body="Can you call me?")
    llm(llm_base_url=None)
    generate(user)  # stored, not phrased
    llm()

    first = Insight.objects.filter(user=user, kind="awaiting_reply").order_by("id").first()
    resume = insights_generate(user_id=user.pk, now=NOW, phase="llm", deadline=time.monotonic())

    assert resume == Resume("llm", first.pk)
    assert openai_server.count("chat/completions") == 1
    assert insights_generate(user_id=user.pk, now=NOW, phase="llm", after_id=first.pk) is None
    phrased = Insight.objects.filter(user=user, kind="awaiting_reply")
    assert list(phrased.values_list("summary_source", flat=True)) == ["llm"] * 3


# --- the stored state across content changes -------------------------------------------------


def candidate(basis: dict, summary: str = "heuristic text") -> Candidate:
    return Candidate(
        kind="going_cold",
        fingerprint=fingerprint("going_cold", "contact:x", "since:y"),
        contact_id=None,
        title="Going cold: X",
        summary=summary,
        evidence={"silence_days": 1},
        score=50.0,
        expires_at=NOW + timedelta(days=14),
        basis=basis,
    )


class Phrased:
    phrased, summary, open_questions, reason, definitive = True, "LLM text", [], None, False


def test_the_llm_text_stays_while_its_basis_does_and_goes_when_it_changes(user):
    on = config(llm_base_url="http://llm.invalid/v1")
    insights_store(
        user_id=user.pk, candidates=[candidate({"a": 1})], config=on, report=InsightsReport()
    )
    row = Insight.objects.get(user=user)
    assert insight_llm_record(
        user_id=user.pk, insight_id=row.pk, basis_hash=row.basis_hash, outcome=Phrased()
    )

    # new numbers, same basis: the LLM's text stays
    insights_store(
        user_id=user.pk,
        candidates=[candidate({"a": 1}, "new numbers")],
        config=on,
        report=InsightsReport(),
    )
    row.refresh_from_db()
    assert (row.summary, row.summary_source, row.heuristic_summary) == (
        "LLM text",
        "llm",
        "new numbers",
    )

    # a material change: the heuristic text is back until the LLM phrases it again
    insights_store(
        user_id=user.pk,
        candidates=[candidate({"a": 2}, "changed")],
        config=on,
        report=InsightsReport(),
    )
    row.refresh_from_db()
    assert (row.summary, row.summary_source, row.llm_fallback_reason) == (
        "changed",
        "heuristic",
        None,
    )
    assert row.llm_basis_hash != row.basis_hash  # pending for the LLM phase

    # an answer for the old content is not recorded over the new
    stale_basis = Insight.objects.get(pk=row.pk).llm_basis_hash
    assert not insight_llm_record(
        user_id=user.pk, insight_id=row.pk, basis_hash=stale_basis, outcome=Phrased()
    )


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "the reply has no content"),
        ("[1]", "the reply is list, not an object"),
        ('{"summary": "x"}', "the reply lacks open_questions"),
        ('{"summary": "x", "open_questions": [], "extra": 1}', "the reply has unexpected extra"),
        ('{"summary": "  ", "open_questions": []}', "summary is empty"),
        ('{"summary": 3, "open_questions": []}', "summary is int, not a string"),
        (
            json.dumps({"summary": "x" * 601, "open_questions": []}),
            "summary is 601 characters (at most 600)",
        ),
        ('{"summary": "x", "open_questions": {}}', "open_questions is dict, not an array"),
        (
            '{"summary": "x", "open_questions": [{"text": "q"}]}',
            "open_questions[0] lacks interaction_id",
        ),
        (
            '{"summary": "x", "open_questions": [{"text": "q", "interaction_id": "5"}]}',
            'open_questions[0].interaction_id is "5", not an integer',
        ),
        (
            '{"summary": "x", "open_questions": [{"text": "q", "interaction_id": true}]}',
            "open_questions[0].interaction_id is true, not an integer",
        ),
    ],
)
def test_validate_reply_says_what_is_wrong(content, problem):
    with pytest.raises(InvalidOutput) as caught:
        validate_reply(content, message_ids={5})
    assert str(caught.value) == problem


def test_validate_reply_accepts_the_schema():
    summary, questions = validate_reply(
        '{"summary": " Reply to Jane. ", "open_questions": ['
        '{"text": "Contract?", "interaction_id": 5}, {"text": "General", "interaction_id": null}]}',
        message_ids={5},
    )
    assert summary == "Reply to Jane."
    assert questions == [
        {"text": "Contract?", "interaction_id": 5},
        {"text": "General", "interaction_id": None},
    ]


@pytest.mark.django_db(transaction=True)
def test_an_operators_cancel_stops_the_llm_phase_before_the_next_call(
    user, llm, openai_server, pipeline_config
):
    """The job checks for a cancel between LLM calls: cancelled while the first call is in
    flight, it makes no second call and ends cancelled (not at the wall-clock cap)."""
    from django.utils import timezone

    from jobs.enqueue import enqueue
    from jobs.models import Job
    from jobs.runner import run_job

    pipeline_config(handoff="none", cancel_check_interval_s=0)
    now = timezone.now()
    jane = person(user, "jane@acme.example", "Jane Doe")
    for n in range(4):
        mail(user, jane, at=now - (5 + n) * DAY, thread=f"th-{n}", body="Can you call me?")
    job = enqueue("generate_insights", user=user, payload={"contacts": "all"}, dedupe_key="g:c")

    def cancel_then_answer(request: dict) -> str:
        Job.objects.filter(pk=job.pk).update(cancel_requested=True)  # the operator's click
        return good_reply(request)

    openai_server.chat_handler = cancel_then_answer

    assert run_job(job.pk) == "cancelled"
    assert openai_server.count("chat/completions") == 1
    assert Insight.objects.filter(user=user, kind="awaiting_reply").count() == 4
