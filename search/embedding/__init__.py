"""Embedding providers: `get_provider()` returns the one CRM_PIPELINE_SEARCH configures.

One instance per configuration and process (the local model loads its weights once, ~90 MB),
shared by threads; a change of the setting (tests' ``settings`` fixture, override_settings)
drops it, so the next call builds the provider of the new configuration.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.signals import setting_changed

from search.conf import SETTING, SearchConfig, get_config
from search.embedding.base import EmbeddingError, EmbeddingProvider

__all__ = ["EmbeddingError", "EmbeddingProvider", "get_provider", "provider_for"]

_lock = threading.Lock()
_providers: dict[SearchConfig, EmbeddingProvider] = {}


def provider_for(config: SearchConfig) -> EmbeddingProvider:
    """A new provider for `config` (uncached; `get_provider()` is the cached one)."""
    if config.provider == "openai":
        from search.embedding.openai import OpenAIEmbeddingProvider

        return OpenAIEmbeddingProvider.from_config(config)
    from search.embedding.local import LocalEmbeddingProvider

    return LocalEmbeddingProvider.from_config(config)


def get_provider() -> EmbeddingProvider:
    """The configured provider, built once per configuration.

    Raises ImproperlyConfigured for a bad CRM_PIPELINE_SEARCH, and EmbeddingError (permanent)
    when the local model's weights are missing.
    """
    config = get_config()
    with _lock:
        provider = _providers.get(config)
        if provider is None:
            provider = provider_for(config)
            _providers.clear()  # one configuration at a time: drop the old model's weights
            _providers[config] = provider
        return provider


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        with _lock:
            _providers.clear()


setting_changed.connect(_reset)
