"""The local provider matches sentence-transformers: every stored reference vector (made by
tests/search/reference/make_reference.py with torch, outside the project) within cosine 0.9999."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search.embedding.local import WEIGHTS_SHA256

REFERENCE = Path(__file__).parent / "reference" / "minilm_reference.json"
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def reference() -> dict:
    document = json.loads(REFERENCE.read_text())
    assert document["weights_sha256"] == WEIGHTS_SHA256  # made with the very same weights
    return document


def cosines(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    ours, theirs = ours.astype(np.float64), theirs.astype(np.float64)
    return (ours * theirs).sum(axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
    )


def test_the_reference_set_is_varied(reference):
    sentences = reference["sentences"]
    texts = [s["text"] for s in sentences]
    assert len(sentences) >= 24
    assert any(s["tokens"] == 256 for s in sentences)  # cut at max_seq_length
    assert any(not t.strip() for t in texts)
    assert any("ß" in t or "ü" in t for t in texts) and any("ñ" in t for t in texts)


def test_every_reference_vector_is_matched_within_cosine_0_9999(local_provider, reference):
    sentences = reference["sentences"]
    texts = [s["text"] for s in sentences]
    theirs = np.array([s["vector"] for s in sentences])
    together = cosines(local_provider.embed(texts), theirs)
    alone = cosines(np.stack([local_provider.embed([t])[0] for t in texts]), theirs)
    worst = int(np.argmin(together))
    assert together.min() >= MIN_COSINE, f"{texts[worst][:60]!r}: cosine {together[worst]}"
    assert alone.min() >= MIN_COSINE


def test_token_counts_match_sentence_transformers(local_provider, reference):
    for sentence in reference["sentences"]:
        assert min(local_provider.count_tokens(sentence["text"]), 256) == sentence["tokens"]
