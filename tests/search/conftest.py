"""Fixtures of the search tests: the embed stage pointed at the OpenAI-compatible stand-in."""

from __future__ import annotations

import pytest

from search.indexes import forget_checked_indexes

STAND_IN_MODEL = "nomic-embed-text"
STAND_IN_DIMS = 64


@pytest.fixture
def search_config(settings):
    """Override CRM_PIPELINE_SEARCH keys for one test: search_config(rrf_k=10)."""

    def configure(**overrides: object) -> None:
        current = (
            settings.CRM_PIPELINE_SEARCH
            if isinstance(getattr(settings, "CRM_PIPELINE_SEARCH", None), dict)
            else {}
        )
        settings.CRM_PIPELINE_SEARCH = {**current, **overrides}

    return configure


@pytest.fixture
def stand_in(openai_server, search_config, pipeline_config):
    """The `openai` provider against the stand-in (bag-of-words vectors, 64 dims), no client
    retries (an outage reaches the job at once), jobs run inline."""
    search_config(
        provider="openai",
        openai_base_url=openai_server.base_url,
        openai_model=STAND_IN_MODEL,
        openai_dimensions=STAND_IN_DIMS,
        max_retries=0,
        timeout_s=5.0,
        batch_size=16,
    )
    pipeline_config(handoff="none")
    forget_checked_indexes()
    yield openai_server
    forget_checked_indexes()
