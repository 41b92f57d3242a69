"""Insights settings: ``settings.CRM_PIPELINE_INSIGHTS`` (a dict, from the JSON environment
variable of that name) over defaults. A bad value is refused at start-up by the system check
insights.E001 (insights/checks.py), one line per problem naming the key, the value and what is
expected.

Keys (all optional):

LLM (off unless ``llm_base_url`` is set; the heuristic text stands whenever it is off or fails):
- ``llm_base_url`` (str or null, default null): an OpenAI-compatible API root such as
  ``https://api.openai.com/v1`` or ``http://localhost:11434/v1`` (Ollama).
- ``llm_model`` (str, default "gpt-4o-mini").
- ``llm_api_key_env`` (str, default "OPENAI_API_KEY"): the environment variable holding the key
  (the key itself never goes in settings).
- ``llm_timeout_s`` (number, 1..300, default 20): per request.
- ``llm_max_retries`` (int, 0..5, default 1): retries of a transient failure (429, 5xx, timeout).
- ``llm_kinds`` (list of kinds, default going_cold, awaiting_reply, meeting_prep, weekly_digest):
  which insights the LLM phrases (relationship_strength is one per contact: left out by default).
- ``llm_max_consecutive_failures`` (int, 1..100, default 3): after that many timeouts or errors
  in a row a run stops calling the endpoint (the rest keep their heuristic text, and the reason).

Rules:
- ``strength_half_life_days`` (number, 1..3650, default 30): recency halves every that many days.
- ``strength_frequency_target_90d`` (int, 1..1000, default 12): interactions over 90 days that
  count as full frequency.
- ``strength_min_interactions`` (int, 1..1000, default 3): contacts with fewer get no score.
- ``cold_gap_factor`` (number, 1..20, default 2): silent for more than this many usual gaps.
- ``cold_min_interactions`` (int, 2..10000, default 6) and ``cold_min_each_way`` (int, 0..1000,
  default 2): what counts as a real relationship (interactions in all; received and sent each).
- ``cold_min_silence_days`` (number, 0..365, default 14): never "going cold" sooner.
- ``cold_max_silence_days`` (number, 1..3650, default 365): silent longer is long gone, not
  going cold.
- ``awaiting_reply_days`` (number, 0.5..60, default 3): a question unanswered this long.
- ``awaiting_reply_max_age_days`` (number, 1..365, default 30): older questions are not raised.
- ``meeting_prep_hours`` (number, 1..336, default 48): meetings starting within this window.
- ``meeting_prep_lookback_days`` (number, 1..365, default 90): the attendees' recent threads.
- ``meeting_prep_threads`` (int, 1..20, default 3): threads shown per attendee.
- ``digest_top_contacts`` (int, 1..50, default 5).

Housekeeping:
- ``expiry_days`` (number, 1..365, default 14): an insight is kept this long after the period it
  concerns ends (a meeting's start, a digest's week) or, for a standing situation, after the
  last run that still found it; then it is deleted, whatever its status.
- ``chunk_size`` (int, 10..5000, default 500): contacts per chunk of the job.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

# The kinds (insights.models.InsightKind values), spelled here so settings load without models.
KINDS: tuple[str, ...] = (
    "relationship_strength",
    "going_cold",
    "awaiting_reply",
    "meeting_prep",
    "weekly_digest",
)
DEFAULT_LLM_KINDS: tuple[str, ...] = (
    "going_cold",
    "awaiting_reply",
    "meeting_prep",
    "weekly_digest",
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class InsightsConfig:
    llm_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_api_key_env: str = "OPENAI_API_KEY"
    llm_timeout_s: float = 20.0
    llm_max_retries: int = 1
    llm_kinds: frozenset[str] = frozenset(DEFAULT_LLM_KINDS)
    llm_max_consecutive_failures: int = 3
    strength_half_life_days: float = 30.0
    strength_frequency_target_90d: int = 12
    strength_min_interactions: int = 3
    cold_gap_factor: float = 2.0
    cold_min_interactions: int = 6
    cold_min_each_way: int = 2
    cold_min_silence_days: float = 14.0
    cold_max_silence_days: float = 365.0
    awaiting_reply_days: float = 3.0
    awaiting_reply_max_age_days: float = 30.0
    meeting_prep_hours: float = 48.0
    meeting_prep_lookback_days: float = 90.0
    meeting_prep_threads: int = 3
    digest_top_contacts: int = 5
    expiry_days: float = 14.0
    chunk_size: int = 500

    @property
    def llm_enabled(self) -> bool:
        return bool(self.llm_base_url)


_DEFAULTS = {f.name: f.default for f in fields(InsightsConfig)}
_KEYS = set(_DEFAULTS)

# name -> (type, low, high)
_NUMBERS: dict[str, tuple[type, float, float]] = {
    "llm_timeout_s": (float, 1, 300),
    "llm_max_retries": (int, 0, 5),
    "llm_max_consecutive_failures": (int, 1, 100),
    "strength_half_life_days": (float, 1, 3650),
    "strength_frequency_target_90d": (int, 1, 1000),
    "strength_min_interactions": (int, 1, 1000),
    "cold_gap_factor": (float, 1, 20),
    "cold_min_interactions": (int, 2, 10000),
    "cold_min_each_way": (int, 0, 1000),
    "cold_min_silence_days": (float, 0, 365),
    "cold_max_silence_days": (float, 1, 3650),
    "awaiting_reply_days": (float, 0.5, 60),
    "awaiting_reply_max_age_days": (float, 1, 365),
    "meeting_prep_hours": (float, 1, 336),
    "meeting_prep_lookback_days": (float, 1, 365),
    "meeting_prep_threads": (int, 1, 20),
    "digest_top_contacts": (int, 1, 50),
    "expiry_days": (float, 1, 365),
    "chunk_size": (int, 10, 5000),
}


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _problem(name: str, value: Any, expected: str) -> str:
    return f"CRM_PIPELINE_INSIGHTS[{name!r}]: got {_show(value)}; expected {expected}"


def _number(raw: dict[str, Any], problems: list[str], name: str) -> Any:
    kind, low, high = _NUMBERS[name]
    if name not in raw:
        return _DEFAULTS[name]
    value = raw[name]
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (kind is not int or value == int(value))
        and low <= value <= high
    )
    if not ok:
        whole = "a whole number" if kind is int else "a number"
        problems.append(_problem(name, value, f"{whole} between {low:g} and {high:g}"))
        return _DEFAULTS[name]
    return kind(value)


def _text(raw: dict[str, Any], problems: list[str], name: str, expected: str, ok: Any) -> Any:
    if name not in raw:
        return _DEFAULTS[name]
    value = raw[name]
    if not ok(value):
        problems.append(_problem(name, value, expected))
        return _DEFAULTS[name]
    return value


def _is_url(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, str) or not value.strip():
        return False
    parsed = urlparse(value.strip())
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


_EXPECTED_OBJECT = 'expected a JSON object of insights settings, such as {"awaiting_reply_days": 2}'


def _parse(raw: Any) -> tuple[InsightsConfig, list[str]]:
    """(config, problems): the config has the defaults where a value is bad."""
    if raw is None:
        raw = {}
    if isinstance(raw, str):
        # The settings keep an unparsable CRM_PIPELINE_INSIGHTS variable as it came.
        try:
            json.loads(raw)
            detail = ""
        except ValueError as exc:
            detail = f" (not valid JSON: {exc})"
        return InsightsConfig(), [f"CRM_PIPELINE_INSIGHTS: got {raw!r}{detail}; {_EXPECTED_OBJECT}"]
    if not isinstance(raw, dict):
        return InsightsConfig(), [
            f"CRM_PIPELINE_INSIGHTS: got {_show(raw)} ({type(raw).__name__}); {_EXPECTED_OBJECT}"
        ]
    problems: list[str] = []
    for name in raw:
        if name not in _KEYS:
            problems.append(
                f"CRM_PIPELINE_INSIGHTS[{name!r}]: unknown key (value {_show(raw[name])}); "
                f"expected one of {', '.join(json.dumps(k) for k in sorted(_KEYS))}"
            )
    values: dict[str, Any] = {name: _number(raw, problems, name) for name in _NUMBERS}
    base_url = _text(
        raw,
        problems,
        "llm_base_url",
        'null (no LLM) or an http(s) URL such as "https://api.openai.com/v1"',
        _is_url,
    )
    values["llm_base_url"] = base_url.strip().rstrip("/") if isinstance(base_url, str) else None
    values["llm_model"] = _text(
        raw, problems, "llm_model", "a model name", lambda v: isinstance(v, str) and v.strip()
    ).strip()
    values["llm_api_key_env"] = _text(
        raw,
        problems,
        "llm_api_key_env",
        'the name of an environment variable, such as "OPENAI_API_KEY"',
        lambda v: isinstance(v, str) and bool(_ENV_NAME.match(v)),
    )
    kinds = _text(
        raw,
        problems,
        "llm_kinds",
        f"a list of insight kinds ({', '.join(KINDS)})",
        lambda v: isinstance(v, (list, tuple)) and all(k in KINDS for k in v),
    )
    values["llm_kinds"] = frozenset(kinds)
    config = InsightsConfig(**values)
    if config.awaiting_reply_max_age_days <= config.awaiting_reply_days:
        problems.append(
            _problem(
                "awaiting_reply_max_age_days",
                raw.get("awaiting_reply_max_age_days", config.awaiting_reply_max_age_days),
                f"more than awaiting_reply_days ({config.awaiting_reply_days:g})",
            )
        )
    if config.cold_max_silence_days <= config.cold_min_silence_days:
        problems.append(
            _problem(
                "cold_max_silence_days",
                raw.get("cold_max_silence_days", config.cold_max_silence_days),
                f"more than cold_min_silence_days ({config.cold_min_silence_days:g})",
            )
        )
    return config, problems


def config_problems() -> list[str]:
    """Everything wrong with settings.CRM_PIPELINE_INSIGHTS, one line each (empty when valid)."""
    return _parse(getattr(settings, "CRM_PIPELINE_INSIGHTS", None))[1]


def build_config(raw: Any) -> InsightsConfig:
    """Validate a CRM_PIPELINE_INSIGHTS value; ImproperlyConfigured names every bad key."""
    config, problems = _parse(raw)
    if problems:
        raise ImproperlyConfigured("; ".join(problems))
    return config


@lru_cache(maxsize=1)
def get_config() -> InsightsConfig:
    return build_config(getattr(settings, "CRM_PIPELINE_INSIGHTS", None))


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "CRM_PIPELINE_INSIGHTS":
        get_config.cache_clear()


setting_changed.connect(_reset)
