"""Fixtures shared by the sync tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def wide_sync_config(pipeline_config):
    """Jobs run inline (no hand-off), windows wide enough for any generated mailbox or calendar,
    no pauses and no quota pacing; returns pipeline_config for a test's own additions."""
    pipeline_config(
        handoff="none",
        initial_window_days=3650,
        calendar_window_past_days=3650,
        gmail_chunk_pause_s=0.0,
        calendar_pause_s=0.0,
        gmail_quota_units_per_user_per_minute=10_000_000,
    )
    return pipeline_config
