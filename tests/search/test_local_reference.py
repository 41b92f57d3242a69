"""The local provider matches sentence-transformers, for each local model: every stored reference
vector (made by tests/search/reference/make_reference.py with torch, outside the project) within
cosine 0.9999, and the same token counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search.embedding.local import MINILM, MPNET

REFERENCES = Path(__file__).parent / "reference"
MIN_COSINE = 0.9999
MODELS = {"minilm": ("local_provider", MINILM), "mpnet": ("mpnet_provider", MPNET)}


@pytest.fixture(params=list(MODELS))
def case(request):
    fixture, model = MODELS[request.param]
    document = json.loads((REFERENCES / f"{request.param}_reference.json").read_text())
    assert document["model"] == model.name
    assert document["weights_sha256"] == model.weights_sha256  # made with the very same weights
    assert document["max_seq_length"] == model.max_seq_length
    return document, model, request.getfixturevalue(fixture)


def cosines(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    ours, theirs = ours.astype(np.float64), theirs.astype(np.float64)
    return (ours * theirs).sum(axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_the_reference_set_is_varied(name):
    document = json.loads((REFERENCES / f"{name}_reference.json").read_text())
    sentences = document["sentences"]
    texts = [s["text"] for s in sentences]
    assert len(sentences) >= 24
    # cut at the model's max_seq_length, by more than one sentence
    assert sum(s["tokens"] == document["max_seq_length"] for s in sentences) >= 2
    assert any(not t.strip() for t in texts)
    assert any("ß" in t or "ü" in t for t in texts) and any("ñ" in t for t in texts)


def test_every_reference_vector_is_matched_within_cosine_0_9999(case):
    document, model, provider = case
    sentences = document["sentences"]
    texts = [s["text"] for s in sentences]
    theirs = np.array([s["vector"] for s in sentences])
    assert theirs.shape == (len(texts), model.dims)
    together = cosines(provider.embed(texts), theirs)
    alone = cosines(np.stack([provider.embed([t])[0] for t in texts]), theirs)
    worst = int(np.argmin(together))
    assert together.min() >= MIN_COSINE, f"{texts[worst][:60]!r}: cosine {together[worst]}"
    assert alone.min() >= MIN_COSINE


def test_token_counts_match_sentence_transformers(case):
    document, model, provider = case
    for sentence in document["sentences"]:
        counted = min(provider.count_tokens(sentence["text"]), model.max_seq_length)
        assert counted == sentence["tokens"]
