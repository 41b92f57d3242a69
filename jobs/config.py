"""The operating rules, read from settings.CRM_PIPELINE with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    # Job engine
    job_wall_clock_cap_s: float = 600.0
    job_max_attempts: int = 5
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 600.0
    # A lease outlives the hard kill (cap + 60 s), so a live job never loses its lease.
    lease_grace_s: float = 120.0
    # A queued job not claimed this long after its hand-off is offered to the broker again.
    reoffer_after_s: float = 300.0
    cancel_check_interval_s: float = 2.0
    # "django_q" hands each due job to the django-q2 broker; "none" leaves them for `runjobs`.
    handoff: str = "django_q"
    tick_interval_minutes: int = 1
    # Gmail
    gmail_chunk_size: int = 50
    gmail_chunk_pause_s: float = 0.2
    gmail_max_messages_per_run: int = 2000
    gmail_excluded_labels: tuple[str, ...] = ("SPAM", "TRASH", "DRAFT", "CHAT")
    gmail_excluded_categories: tuple[str, ...] = ()
    # Calendar
    calendar_max_events_per_run: int = 2000
    calendar_pause_every_items: int = 25
    calendar_pause_s: float = 0.05
    calendar_selection: str = "all"  # "all" | "primary" | comma-separated calendar ids
    calendar_window_past_days: int = 180
    calendar_window_future_days: int = 365
    # Google requests
    google_request_timeout_s: float = 10.0
    google_request_retries: int = 3
    # Incremental window
    initial_window_days: int = 30
    window_overlap_s: float = 300.0
    # Periodic sync
    periodic_sync_minutes: int = 15
    # Normalization
    normalize_chunk_size: int = 500
    max_body_chars: int = 100_000
    # Google batch parts: first backoff before resending failed parts, and the longest
    # Retry-After waited in-process (longer ones go back to the job engine as a retry).
    google_batch_retry_base_s: float = 1.0
    google_retry_after_cap_s: float = 30.0
    # Google's quotas for a Cloud project created after 2026-05-01, each held by the pacer
    # (jobs.google.pacer) over a sliding window: Gmail in quota units (messages.get = 5),
    # Calendar in requests; per user (one Google account) and per project (every account).
    gmail_quota_units_per_user_per_minute: int = field(
        default=6_000, metadata={"min": 100, "max": 1_000_000_000}
    )
    gmail_quota_units_per_project_per_minute: int = field(
        default=1_200_000, metadata={"min": 100, "max": 1_000_000_000}
    )
    calendar_requests_per_user_per_minute: int = field(
        default=600, metadata={"min": 1, "max": 1_000_000_000}
    )
    calendar_requests_per_project_per_minute: int = field(
        default=10_000, metadata={"min": 1, "max": 1_000_000_000}
    )
    # Background work (backfill, priority="background") spends at most this share of each
    # per-user limit, leaving the rest for incremental syncs.
    quota_background_share: float = field(default=0.5, metadata={"min": 0.05, "max": 1.0})
    # The sliding window the pacer counts over: Google's 60 s plus a margin for the time between
    # a reservation and Google counting the call (request latency, batch parts served later).
    # Tests shorten it to run in seconds.
    quota_window_s: float = field(default=62.0, metadata={"min": 1.0, "max": 3600.0})
    # Every limit also holds over this shorter window (0 = off) at 1.5x its even rate, so a
    # long sync's waits stay short (below google_retry_after_cap_s) instead of a burst of a
    # minute's quota followed by a wait of most of a minute.
    quota_burst_window_s: float = field(default=15.0, metadata={"min": 0.0, "max": 3600.0})


_DEFAULTS = PipelineConfig()
_FIELD_TYPES = {f.name: type(getattr(_DEFAULTS, f.name)) for f in fields(PipelineConfig)}


def get_config() -> PipelineConfig:
    """Build the config from settings.CRM_PIPELINE, rejecting unknown keys and wrong types."""
    overrides: dict[str, Any] = dict(getattr(settings, "CRM_PIPELINE", {}) or {})
    unknown = sorted(set(overrides) - set(_FIELD_TYPES))
    if unknown:
        raise ImproperlyConfigured(f"unknown CRM_PIPELINE keys: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        expected = _FIELD_TYPES[key]
        try:
            values[key] = tuple(value) if expected is tuple else expected(value)
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"CRM_PIPELINE[{key!r}] must be {expected.__name__}, got {value!r}"
            ) from exc
    return PipelineConfig(**values)
