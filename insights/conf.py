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

from dataclasses import dataclass, field, replace
from typing import Any

from jobs.config import AppSettings

SETTING = "CRM_PIPELINE_INSIGHTS"

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


def _between(low: float, high: float) -> dict[str, float]:
    return {"min": low, "max": high}


@dataclass(frozen=True, slots=True)
class InsightsConfig:
    # Each field's metadata says what a valid value is (jobs.config's validator).
    llm_base_url: str | None = field(
        default=None,
        metadata={
            "pattern": r"\s*https?://[^/\s]+\S*\s*",
            "expected": 'null (no LLM) or an http(s) URL such as "https://api.openai.com/v1"',
        },
    )
    llm_model: str = field(
        default="gpt-4o-mini", metadata={"pattern": r".*\S.*", "expected": "a model name"}
    )
    llm_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={
            "pattern": r"[A-Za-z_][A-Za-z0-9_]*",
            "expected": 'the name of an environment variable, such as "OPENAI_API_KEY"',
        },
    )
    llm_timeout_s: float = field(default=20.0, metadata=_between(1, 300))
    llm_max_retries: int = field(default=1, metadata=_between(0, 5))
    llm_kinds: tuple[str, ...] = field(
        default=DEFAULT_LLM_KINDS,
        metadata={"choices": KINDS, "expected": f"a list of insight kinds ({', '.join(KINDS)})"},
    )
    llm_max_consecutive_failures: int = field(default=3, metadata=_between(1, 100))
    strength_half_life_days: float = field(default=30.0, metadata=_between(1, 3650))
    strength_frequency_target_90d: int = field(default=12, metadata=_between(1, 1000))
    strength_min_interactions: int = field(default=3, metadata=_between(1, 1000))
    cold_gap_factor: float = field(default=2.0, metadata=_between(1, 20))
    cold_min_interactions: int = field(default=6, metadata=_between(2, 10000))
    cold_min_each_way: int = field(default=2, metadata=_between(0, 1000))
    cold_min_silence_days: float = field(default=14.0, metadata=_between(0, 365))
    cold_max_silence_days: float = field(default=365.0, metadata=_between(1, 3650))
    awaiting_reply_days: float = field(default=3.0, metadata=_between(0.5, 60))
    awaiting_reply_max_age_days: float = field(default=30.0, metadata=_between(1, 365))
    meeting_prep_hours: float = field(default=48.0, metadata=_between(1, 336))
    meeting_prep_lookback_days: float = field(default=90.0, metadata=_between(1, 365))
    meeting_prep_threads: int = field(default=3, metadata=_between(1, 20))
    digest_top_contacts: int = field(default=5, metadata=_between(1, 50))
    expiry_days: float = field(default=14.0, metadata=_between(1, 365))
    chunk_size: int = field(default=500, metadata=_between(10, 5000))

    @property
    def llm_enabled(self) -> bool:
        return bool(self.llm_base_url)


def _build(values: dict[str, Any], problems: list[str]) -> InsightsConfig:
    config = InsightsConfig(**values)
    base_url = config.llm_base_url.strip().rstrip("/") if config.llm_base_url else None
    config = replace(
        config,
        llm_base_url=base_url or None,
        llm_model=config.llm_model.strip(),
        llm_kinds=tuple(dict.fromkeys(config.llm_kinds)),
    )
    if config.awaiting_reply_max_age_days <= config.awaiting_reply_days:
        problems.append(
            f"{SETTING}['awaiting_reply_max_age_days']: got "
            f"{config.awaiting_reply_max_age_days:g}; expected more than awaiting_reply_days "
            f"({config.awaiting_reply_days:g})"
        )
    if config.cold_max_silence_days <= config.cold_min_silence_days:
        problems.append(
            f"{SETTING}['cold_max_silence_days']: got {config.cold_max_silence_days:g}; "
            f"expected more than cold_min_silence_days ({config.cold_min_silence_days:g})"
        )
    return config


SETTINGS = AppSettings(
    SETTING,
    InsightsConfig,
    example='{"awaiting_reply_days": 2}',
    check_id="insights.E001",
    build=_build,
)
config_problems = SETTINGS.problems
build_config = SETTINGS.build
get_config = SETTINGS.get
