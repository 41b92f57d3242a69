"""The optional LLM: an OpenAI-compatible chat completion that phrases an insight's summary and
extracts its open questions, with JSON-schema output that is validated here.

The request (``POST {llm_base_url}/chat/completions``) carries the insight's kind, title,
heuristic summary and evidence (without its list of interaction ids), and the text of its
newest messages (quoted history removed), with ``response_format`` = ``{"type":
"json_schema", "json_schema": {"name": ..., "strict": true, "schema": REPLY_SCHEMA}}``.
Servers do not all enforce a schema (and strict mode has no length limits), so the reply is
checked here against the same rules: an object with exactly ``summary`` (a non-empty string of
at most SUMMARY_MAX_CHARS) and ``open_questions`` (at most MAX_QUESTIONS objects with exactly
``text``, a non-empty string, and ``interaction_id``, one of the messages given or null).

Outcomes (LLMOutcome): phrased; or a fallback whose reason is recorded on the insight while the
heuristic text stands: "timeout" (no answer within llm_timeout_s, after llm_max_retries),
"invalid_output: <what is wrong>" (a reply that breaks the schema, or a refusal; not asked
again until the content changes), "error: <what happened>" (HTTP errors, refused
connections). "not_configured" is set when the insight is stored (insights.services), since no
call is made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from insights.conf import InsightsConfig
from insights.models import Insight
from search.openai_client import OpenAIClient, OpenAIClientError

SUMMARY_MAX_CHARS = 600
QUESTION_MAX_CHARS = 300
MAX_QUESTIONS = 10
REASON_MAX_CHARS = 500
SCHEMA_NAME = "insight_summary"

REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "open_questions"],
    "properties": {
        "summary": {"type": "string"},
        "open_questions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["text", "interaction_id"],
                "properties": {
                    "text": {"type": "string"},
                    "interaction_id": {"type": ["integer", "null"]},
                },
            },
        },
    },
}

SYSTEM_PROMPT = (
    "You help a professional keep up with their relationships. You are given one insight a "
    "CRM derived from their e-mail and calendar: its kind, a draft summary, the numbers it "
    "was derived from, and the text of the messages involved. Write a short, factual summary "
    f"for them (at most {SUMMARY_MAX_CHARS} characters, one to three sentences, in English, "
    "addressing them as 'you'), using only the facts given; do not invent names, dates or "
    "numbers. List the questions or requests addressed to them in the messages that are "
    "still open, each with the interaction_id of the message that asks it (null if none "
    "applies); an empty list if there are none. Answer with JSON only, matching the schema."
)


class InvalidOutput(ValueError):
    """The reply does not match REPLY_SCHEMA (or names a message it was not given)."""


@dataclass(frozen=True, slots=True)
class LLMOutcome:
    summary: str | None = None
    open_questions: list[dict[str, Any]] = field(default_factory=list)
    # None when phrased; else "timeout", "invalid_output: ...", "error: ..."
    reason: str | None = None

    @property
    def phrased(self) -> bool:
        return self.reason is None

    @property
    def kind(self) -> str:
        """The reason's kind: "timeout", "invalid_output" or "error" ("" when phrased)."""
        return (self.reason or "").split(":", 1)[0]

    @property
    def definitive(self) -> bool:
        """An answer that asking again would not change (an invalid output)."""
        return self.kind == "invalid_output"

    @property
    def failed(self) -> bool:
        """The endpoint failed (timeout or error): counts towards stopping a run's calls."""
        return self.kind in ("timeout", "error")


def _reason(kind: str, detail: str = "") -> str:
    text = f"{kind}: {' '.join(detail.split())}" if detail else kind
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 1] + "…"


def _is_timeout(exc: OpenAIClientError) -> bool:
    """No answer in time (the client says so in its message; a timeout has no HTTP status)."""
    return exc.status is None and "no answer within" in str(exc)


def llm_client(config: InsightsConfig) -> OpenAIClient:
    """The HTTP client for the configured endpoint (the key is read from llm_api_key_env at
    each call, never stored or logged)."""
    if not config.llm_base_url:
        raise ValueError("no LLM is configured (CRM_PIPELINE_INSIGHTS['llm_base_url'])")
    return OpenAIClient(
        base_url=config.llm_base_url,
        api_key_env=config.llm_api_key_env,
        timeout_s=config.llm_timeout_s,
        max_retries=config.llm_max_retries,
    )


def request_body(
    *, config: InsightsConfig, insight: Insight, messages: list[dict[str, Any]]
) -> dict[str, Any]:
    """The chat completion request for one insight."""
    evidence = insight.evidence if isinstance(insight.evidence, dict) else {}
    facts = {
        "kind": insight.kind,
        "title": insight.title,
        "draft_summary": insight.heuristic_summary,
        # the messages carry their own ids; a digest's week of ids would only cost tokens
        "evidence": {k: v for k, v in evidence.items() if k != "interaction_ids"},
        "messages": messages,
    }
    return {
        "model": config.llm_model,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": json.dumps(facts, ensure_ascii=False, default=str)},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": REPLY_SCHEMA},
        },
    }


def _exact_keys(value: Any, where: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidOutput(f"{where} is {type(value).__name__}, not an object")
    missing = sorted(keys - set(value))
    if missing:
        raise InvalidOutput(f"{where} lacks {', '.join(missing)}")
    extra = sorted(set(value) - keys)
    if extra:
        raise InvalidOutput(f"{where} has unexpected {', '.join(extra)}")
    return value


def _text(value: Any, where: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidOutput(f"{where} is {type(value).__name__}, not a string")
    text = value.strip()
    if not text:
        raise InvalidOutput(f"{where} is empty")
    if len(text) > limit:
        raise InvalidOutput(f"{where} is {len(text)} characters (at most {limit})")
    return text


def validate_reply(content: Any, *, message_ids: set[int]) -> tuple[str, list[dict[str, Any]]]:
    """(summary, open_questions) from the assistant's message content; InvalidOutput says what
    is wrong."""
    if not isinstance(content, str) or not content.strip():
        raise InvalidOutput("the reply has no content")
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise InvalidOutput(f"not JSON ({exc})") from None
    data = _exact_keys(data, "the reply", {"summary", "open_questions"})
    summary = _text(data["summary"], "summary", SUMMARY_MAX_CHARS)
    questions = data["open_questions"]
    if not isinstance(questions, list):
        raise InvalidOutput(f"open_questions is {type(questions).__name__}, not an array")
    if len(questions) > MAX_QUESTIONS:
        raise InvalidOutput(f"open_questions has {len(questions)} items (at most {MAX_QUESTIONS})")
    result = []
    for n, item in enumerate(questions):
        where = f"open_questions[{n}]"
        item = _exact_keys(item, where, {"text", "interaction_id"})
        text = _text(item["text"], f"{where}.text", QUESTION_MAX_CHARS)
        ref = item["interaction_id"]
        if ref is not None and (isinstance(ref, bool) or not isinstance(ref, int)):
            raise InvalidOutput(f"{where}.interaction_id is {json.dumps(ref)}, not an integer")
        if ref is not None and ref not in message_ids:
            raise InvalidOutput(f"{where}.interaction_id {ref} is not one of the messages given")
        result.append({"text": text, "interaction_id": ref})
    return summary, result


def _content(answer: dict[str, Any]) -> Any:
    """The assistant message's content (InvalidOutput for a response without one, or a
    refusal)."""
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise InvalidOutput("the response has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise InvalidOutput("the response's choice has no message")
    if message.get("refusal"):
        raise InvalidOutput(f"the model refused ({str(message['refusal'])[:200]})")
    return message.get("content")


def llm_phrase(
    *,
    client: OpenAIClient,
    config: InsightsConfig,
    insight: Insight,
    messages: list[dict[str, Any]],
    deadline: float | None = None,
) -> LLMOutcome:
    """Ask the LLM to phrase `insight`; never raises for what the endpoint does."""
    body = request_body(config=config, insight=insight, messages=messages)
    try:
        answer = client.post_json("chat/completions", body, deadline=deadline)
    except OpenAIClientError as exc:
        if _is_timeout(exc):
            return LLMOutcome(reason=_reason("timeout"))
        return LLMOutcome(reason=_reason("error", str(exc)))
    try:
        summary, questions = validate_reply(
            _content(answer), message_ids={m["interaction_id"] for m in messages}
        )
    except InvalidOutput as exc:
        return LLMOutcome(reason=_reason("invalid_output", str(exc)))
    return LLMOutcome(summary=summary, open_questions=questions)
