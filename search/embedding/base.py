"""The one small interface every embedding provider implements.

A provider turns texts into unit-length float32 vectors of a fixed size. `model` names what
produced them (stored on every Embedding row, so a query never mixes models), `dims` their size,
`max_tokens` the longest input the model reads (the embed stage chunks text to fit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


class EmbeddingError(Exception):
    """A provider failed; `transient` says whether a retry may succeed (outage, 429, timeout)."""

    def __init__(self, message: str, *, transient: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after_s = retry_after_s


@runtime_checkable
class EmbeddingProvider(Protocol):
    name: str  # "local" | "openai"
    model: str  # e.g. "sentence-transformers/all-MiniLM-L6-v2"
    max_tokens: int

    @property
    def dims(self) -> int:
        """The size of every vector (read-only: a plain attribute satisfies it too; the openai
        provider may learn it from the endpoint on first use)."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many of the model's tokens `text` takes (the local model counts exactly with its
        tokenizer; a remote provider may estimate, erring high), for chunking to `max_tokens`."""
        ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """(len(texts), dims) unit-length float32 vectors, in the order of `texts`.

        Raises EmbeddingError on failure (never returns a partial result).
        """
        ...
