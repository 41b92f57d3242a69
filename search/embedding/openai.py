"""The `openai` provider: any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, Ollama, vLLM,
LM Studio), through search.openai_client (timeouts, retries honouring Retry-After).

Texts go in batches of `batch_size`; each answer is put back in input order by its ``index``,
checked (one finite vector per input, every one of `dims` numbers) and normalized to unit
length, since not every server normalizes. A vector of another size is a permanent error: the
configuration names the wrong model or dimensions, and mixing sizes would corrupt the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from search.conf import SearchConfig
from search.embedding.base import EmbeddingError
from search.openai_client import OpenAIClient, OpenAIClientError

# Native sizes of OpenAI's models, so `dims` is known without a request; any other model
# without configured dimensions is asked once (see `dims`).
KNOWN_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# Tokens a tokenizer may add around the text (BOS/EOS, [CLS]/[SEP]).
_SPECIAL_TOKENS = 2


class OpenAIEmbeddingProvider:
    """EmbeddingProvider over an OpenAI-compatible endpoint; thread-safe (no shared state but
    the dims learnt once)."""

    name = "openai"

    def __init__(
        self,
        *,
        client: OpenAIClient,
        model: str,
        dimensions: int | None = None,
        max_tokens: int = 8191,
        batch_size: int = 64,
    ) -> None:
        self.client = client
        self.model = model
        # Sent as the request's `dimensions` only when configured (servers other than OpenAI's
        # text-embedding-3 may refuse the parameter).
        self.dimensions = dimensions
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._dims = dimensions or KNOWN_DIMS.get(model)

    @classmethod
    def from_config(cls, config: SearchConfig) -> OpenAIEmbeddingProvider:
        return cls(
            client=OpenAIClient.from_config(config),
            model=config.openai_model,
            dimensions=config.openai_dimensions,
            max_tokens=config.openai_max_tokens,
            batch_size=config.batch_size,
        )

    @property
    def dims(self) -> int:
        """The configured dimensions, else the model's known size, else the size of the
        vector the endpoint returns for a one-word probe (one request, once)."""
        if self._dims is None:
            self._dims = int(self._request(["dimension probe"]).shape[1])
        return self._dims

    def count_tokens(self, text: str) -> int:
        """An upper bound, not an estimate that may fall short: UTF-8 bytes plus two special
        tokens.

        Byte-level BPE (OpenAI's tiktoken, most open models) never makes more tokens than
        bytes, and WordPiece or SentencePiece no more than characters (or bytes with byte
        fallback), so text cut to `max_tokens` by this count fits whatever tokenizer the
        endpoint runs. English takes about 4 bytes per token, so chunks come out at roughly a
        quarter of the model's window (~8 KB of text for OpenAI's 8191 tokens).
        """
        return len(text.encode("utf-8")) + _SPECIAL_TOKENS

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """(len(texts), dims) unit float32 vectors in input order; EmbeddingError on failure.

        Empty texts are sent as one space (the APIs refuse empty input).
        """
        texts = [text if text.strip() else " " for text in texts]
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        parts = [
            self._request(texts[start : start + self.batch_size])
            for start in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts)

    def _request(self, batch: list[str]) -> npt.NDArray[np.float32]:
        body: dict[str, Any] = {"model": self.model, "input": batch}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        try:
            answer = self.client.post_json("embeddings", body)
        except OpenAIClientError as exc:
            raise EmbeddingError(
                str(exc), transient=exc.transient, retry_after_s=exc.retry_after_s
            ) from exc
        return self._vectors(answer, len(batch))

    def _vectors(self, answer: dict[str, Any], n: int) -> npt.NDArray[np.float32]:
        """The answer's vectors in input order, checked and normalized."""

        def bad(detail: str) -> EmbeddingError:
            return EmbeddingError(
                f"{self.client.url('embeddings')} (model {self.model!r}): {detail}",
                transient=False,
            )

        data = answer.get("data")
        if not isinstance(data, list) or len(data) != n:
            count = len(data) if isinstance(data, list) else "no"
            raise bad(f"the answer has {count} embeddings for {n} inputs")
        rows: list[list[float] | None] = [None] * n
        for item in data:
            index = item.get("index") if isinstance(item, dict) else None
            vector = item.get("embedding") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < n or rows[index] is not None:
                raise bad(f"an embedding has a missing, repeated or out-of-range index ({index})")
            if not isinstance(vector, list) or not vector:
                raise bad(
                    "an embedding is not a list of numbers (base64 encoding is not supported)"
                )
            rows[index] = vector
        expected = self._dims
        sizes = {len(row) for row in rows if row is not None}
        if len(sizes) != 1 or (expected is not None and sizes != {expected}):
            got = ", ".join(str(s) for s in sorted(sizes))
            raise bad(
                f"vectors of {got} dimensions, expected {expected if expected else 'one size'}"
                " (set openai_dimensions in CRM_PIPELINE_SEARCH to the model's size)"
            )
        try:
            vectors = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise bad(f"an embedding holds something other than numbers ({exc})") from None
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise bad("an embedding is zero or not finite")
        if self._dims is None:
            self._dims = vectors.shape[1]
        return vectors / norms
