"""Benchmark: the local encoder's FLOP rate against this machine's float32 GEMM rate, one run.

    .venv/bin/python bench/embed_encoder.py [--sentences 256] [--repeats 3]
        [--model all-MiniLM-L6-v2 | all-mpnet-base-v2]

1. GEMM rate: numpy float32 matmuls of the encoder's own shapes, (M x 384) @ (384 x 1152 |
   384 | 1536) and (M x 1536) @ (1536 x 384), for M = 2048 and 4096 token rows (the size of
   the encoder's batches), cycled for 1 s (about one encoder call, so both rates are
   sustained over similar windows); the better M's rate is the machine's rate. Measured
   before each encoder round and after the last, the best kept. Also printed: the rate of the
   best single calls (best of 7 each, same rounds), and the ratio to it; on a shared machine a
   10 ms call finds a quiet moment far more often than a 1 s window does.
2. Encoder: `LocalEmbeddingProvider.embed()` (tokenization included) over `sentences`
   e-mail-like texts of 32 to 256 tokens (the lengths are printed), in calls of 64 texts (the
   embed stage's batch size), each call's best of `repeats` runs.
3. Model FLOPs per sentence of L tokens, counted analytically over its real tokens (padding is
   the encoder's cost, not credited), multiply-add = 2 FLOPs, per layer of 6, with d = 384
   (all-MiniLM-L6-v2, the default; all-mpnet-base-v2: 12 layers, d = 768, texts cut at 384
   tokens, and its relative-position bias, O(L^2) per layer, also left out):
     projections  2 L (3 d^2 + d^2)      query/key/value and attention output
     feed-forward 2 L (d 4d + 4d d)      two linear layers, 384 -> 1536 -> 384
     attention    2 L^2 d + 2 L^2 d      scores Q K^T and the weighted sum P V
   = 6 (24 L d^2 + 4 L^2 d); embeddings, LayerNorm, softmax, GELU and pooling (O(L d)) are
   left out. About 1 GFLOP for 30 tokens.
4. ratio = achieved FLOP/s / measured GEMM FLOP/s (target >= 0.4).

OpenBLAS: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which pin a kernel for correctness on some
machines, slow a current numpy down; the script re-executes itself with both unset (for its own
process only) and prints the BLAS library, kernel and threads that ran (threadpoolctl when
installed, else the OpenBLAS library's own answer, else numpy.show_config()).

`measure()` returns the figures as a dict (bench/embed.py imports it); it measures in a child
process when the calling process has those variables set. Prints progress and, as the last
line, one JSON object.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Running as a script puts bench/ first on sys.path, where bench/queue.py shadows stdlib `queue`.
ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
UNSET_MARK = "CRM_PIPELINE_BENCH_BLAS_UNSET"

# (hidden, feed-forward, layers) of each local model
SHAPES = {"all-MiniLM-L6-v2": (384, 1536, 6), "all-mpnet-base-v2": (768, 3072, 12)}
DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Texts per embed() call: the default batch_size of CRM_PIPELINE_SEARCH, what the embed stage
# sends at a time.
CALL_SIZE = 64


def model_flops(tokens: int, model: str = DEFAULT_MODEL) -> int:
    """FLOPs of one sentence of `tokens` tokens (see the module docstring)."""
    (d, ffn, layers), n = SHAPES[model], tokens
    per_layer = 2 * n * (4 * d * d) + 2 * n * (2 * d * ffn) + 4 * n * n * d
    return layers * per_layer


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARIABLES}
    unset = [f"{k}={os.environ[k]}" for k in BLAS_VARIABLES if k in os.environ]
    env[UNSET_MARK] = ", ".join(unset) or "-"
    return env


def _blas_is_clean() -> bool:
    return not any(k in os.environ for k in BLAS_VARIABLES)


# --- which BLAS ran -------------------------------------------------------------------------------


def blas_info() -> dict[str, Any]:
    """The BLAS numpy runs: library, version, kernel (core) and threads."""
    import numpy as np

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return {
                    "source": "threadpoolctl",
                    "library": pool.get("internal_api"),
                    "version": pool.get("version"),
                    "kernel": pool.get("architecture"),
                    "threads": pool.get("num_threads"),
                }
    info = _openblas_by_ctypes()
    if info:
        return info
    config = np.show_config(mode="dicts")
    blas = config.get("Build Dependencies", {}).get("blas", {})
    return {
        "source": "numpy.show_config (build, not the runtime kernel)",
        "library": blas.get("name"),
        "version": blas.get("version"),
        "kernel": blas.get("openblas configuration"),
        "threads": None,
    }


def _openblas_by_ctypes() -> dict[str, Any] | None:
    """Ask the OpenBLAS library numpy loaded for its core name (as threadpoolctl does)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()})
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_", "64_"), ("", "64_"), ("", "")):
            corename = getattr(lib, f"{prefix}openblas_get_corename{suffix}", None)
            threads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            config = getattr(lib, f"{prefix}openblas_get_config{suffix}", None)
            if corename is None:
                continue
            corename.restype = ctypes.c_char_p
            version = None
            if config is not None:
                config.restype = ctypes.c_char_p
                version = (config() or b"").decode().split(" ")[1:2]
            return {
                "source": "OpenBLAS library (ctypes)",
                "library": "openblas",
                "version": version[0] if version else None,
                "kernel": (corename() or b"").decode(),
                "threads": int(threads()) if threads is not None else None,
            }
    return None


# --- workload -------------------------------------------------------------------------------------

_NAMES = ["Anna", "Tom", "Priya", "Jörg", "Lucía", "Mehmet", "Chen", "Olivia"]
_OPENERS = [
    "Hi {name}, thanks for the update on the {topic}.",
    "Hello {name}, following up on our call about the {topic}.",
    "Dear {name}, please find attached the revised {topic}.",
    "{name}, quick question about the {topic}:",
]
_TOPICS = [
    "Q3 contract renewal",
    "invoice 2024-117 for the March delivery",
    "onboarding plan for the new sales team",
    "pricing proposal for the enterprise tier",
    "budget for the Berlin trade fair",
    "security review of the customer portal",
]
_BODY = [
    "Could we move our call to Thursday afternoon, ideally after 3 pm?",
    "The payment is still outstanding and our accounting team asked me to check in.",
    "I have added comments to sections 2 and 4; the rest looks fine to me.",
    "Legal wants the liability clause capped at twelve months of fees.",
    "We can offer a 10% discount if the order is confirmed before the end of the month.",
    "Let me know if you need anything else from our side before the deadline.",
    "The shipment left the warehouse yesterday and should arrive by Monday.",
    "Our CFO will join the meeting, so please bring the updated forecast.",
    "As discussed, the pilot covers two regions and runs for eight weeks.",
    "I'm out of office next week; my colleague will handle any urgent questions.",
]
_CLOSINGS = ["Best, {me}", "Thanks a lot, {me}", "Kind regards, {me}", "Cheers, {me}"]


def email_like_texts(n: int, seed: int = 7) -> list[str]:
    """`n` deterministic e-mail-like texts: a quarter subject-line short, half a paragraph,
    a quarter long (cut by the model at 256 tokens)."""
    import random

    rng = random.Random(seed)
    texts = []
    for i in range(n):
        name, me = rng.sample(_NAMES, 2)
        opener = rng.choice(_OPENERS).format(name=name, topic=rng.choice(_TOPICS))
        kind = i % 4
        if kind == 0:
            body = [rng.choice(_BODY)]
            closing = ""
        elif kind == 3:
            body = [rng.choice(_BODY) for _ in range(rng.randint(10, 16))]
            closing = rng.choice(_CLOSINGS).format(me=me)
        else:
            body = [rng.choice(_BODY) for _ in range(rng.randint(2, 5))]
            closing = rng.choice(_CLOSINGS).format(me=me)
        texts.append(" ".join([opener, *body, closing]).strip() + f" (ref {1000 + i})")
    return texts


# --- measurement ----------------------------------------------------------------------------------


def _gemm_operands(rows: int, model: str = DEFAULT_MODEL) -> list[tuple[Any, Any]]:
    import numpy as np

    rng = np.random.default_rng(0)
    hidden, ffn, _ = SHAPES[model]
    shapes = [(rows, hidden, 3 * hidden), (rows, hidden, hidden), (rows, hidden, ffn)]
    shapes.append((rows, ffn, hidden))
    return [
        (
            rng.standard_normal((m, k), dtype=np.float32),
            rng.standard_normal((k, n), dtype=np.float32),
        )
        for m, k, n in shapes
    ]


def gemm_burst_rate(repeats: int = 7, model: str = DEFAULT_MODEL) -> float:
    """FLOP/s of float32 matmuls of the encoder's shapes, each the best of `repeats` single
    calls: the better of M = 2048 and 4096 rows."""
    best_rate = 0.0
    for rows in (2048, 4096):
        flops, seconds = 0, 0.0
        for a, b in _gemm_operands(rows, model):
            a @ b  # warm-up
            seconds += min(_timed(lambda a=a, b=b: a @ b) for _ in range(repeats))
            flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        best_rate = max(best_rate, flops / seconds)
    return best_rate


def gemm_rate(window_s: float = 1.0, model: str = DEFAULT_MODEL) -> float:
    """Sustained FLOP/s of float32 matmuls of the encoder's shapes, cycled for `window_s`
    (about one encoder call): the better of M = 2048 and 4096 rows."""
    best_rate = 0.0
    for rows in (2048, 4096):
        operands = _gemm_operands(rows, model)
        per_cycle = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in operands)
        for a, b in operands:
            a @ b  # warm-up
        cycles, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < window_s or cycles == 0:
            for a, b in operands:
                a @ b
            cycles += 1
        best_rate = max(best_rate, cycles * per_cycle / elapsed)
    return best_rate


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _measure_here(sentences: int, repeats: int, say: Any, model: str) -> dict[str, Any]:
    import numpy as np

    from search.embedding.local import LocalEmbeddingProvider, local_model, locate_weights

    blas = blas_info()
    say(
        f"BLAS: {blas['library']} {blas['version']}, kernel {blas['kernel']}, "
        f"threads {blas['threads']} (from {blas['source']}); "
        f"unset for this run: {os.environ.get(UNSET_MARK, '-')}"
    )
    spec = local_model(model)
    source = locate_weights(model_dir=None, model=spec)
    provider = LocalEmbeddingProvider(source, model=spec)
    texts = email_like_texts(sentences)
    lengths = [min(provider.count_tokens(t), provider.max_tokens) for t in texts]
    flops = sum(model_flops(n, model) for n in lengths)
    say(
        f"model: {spec.name}; workload: {sentences} e-mail-like texts, tokens min "
        f"{min(lengths)} / median {statistics.median(lengths):g} / mean "
        f"{statistics.fmean(lengths):.1f} / max {max(lengths)}; "
        f"{flops / sentences / 1e9:.2f} GFLOP per sentence on average"
    )
    provider.embed(texts[:CALL_SIZE])  # load the weights, warm up
    calls = [texts[i : i + CALL_SIZE] for i in range(0, len(texts), CALL_SIZE)]
    # GEMM and encoder runs alternate, so both peaks are sampled over the same minutes of a
    # machine whose load may change; each call of 64 texts keeps its best time, as each GEMM
    # shape does (a short quiet moment counts for both alike).
    gemms: list[float] = []
    best_calls = [math.inf] * len(calls)
    bursts: list[float] = []
    for _ in range(repeats):
        gemms.append(gemm_rate(model=model))
        bursts.append(gemm_burst_rate(model=model))
        round_s = 0.0
        for i, call in enumerate(calls):
            seconds = _timed(lambda call=call: provider.embed(call))
            best_calls[i] = min(best_calls[i], seconds)
            round_s += seconds
        say(
            f"GEMM float32 (encoder shapes): {gemms[-1] / 1e9:.1f} GFLOP/s; "
            f"encoder: {sentences / round_s:.1f} sentences/s"
        )
    gemms.append(gemm_rate(model=model))
    say(f"GEMM float32 (encoder shapes): {gemms[-1] / 1e9:.1f} GFLOP/s")
    gemm = max(gemms)
    bursts.append(gemm_burst_rate(model=model))
    burst = max(bursts)
    say(f"GEMM float32, best single calls: {burst / 1e9:.1f} GFLOP/s")
    best = sum(best_calls)
    achieved = flops / best
    result = {
        "model": spec.name,
        "sentences": sentences,
        "tokens_min": min(lengths),
        "tokens_median": float(statistics.median(lengths)),
        "tokens_mean": round(statistics.fmean(lengths), 1),
        "tokens_max": max(lengths),
        "sentences_per_s": round(sentences / best, 1),
        "tokens_per_s": round(sum(lengths) / best),
        "gflop_per_sentence": round(flops / sentences / 1e9, 3),
        "achieved_gflop_s": round(achieved / 1e9, 1),
        "gemm_gflop_s": round(gemm / 1e9, 1),
        "ratio": round(achieved / gemm, 3),
        "gemm_burst_gflop_s": round(burst / 1e9, 1),
        "ratio_to_burst": round(achieved / burst, 3),
        "blas_kernel": blas["kernel"],
        "blas_threads": blas["threads"],
        "blas_source": blas["source"],
        "blas_env_unset": os.environ.get(UNSET_MARK, "-"),
        "numpy": np.__version__,
    }
    say(
        f"encoder: {result['sentences_per_s']} sentences/s, {result['achieved_gflop_s']} "
        f"GFLOP/s of {result['gemm_gflop_s']} measured: ratio {result['ratio']} (target >= 0.4)"
    )
    return result


def measure(
    *, sentences: int = 256, repeats: int = 3, quiet: bool = False, model: str = DEFAULT_MODEL
) -> dict[str, Any]:
    """The encoder's figures (see the module docstring), measured without the OpenBLAS
    variables: in a child process when this one has them."""

    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    if _blas_is_clean():
        return _measure_here(sentences, repeats, say, model)
    command = [sys.executable, str(Path(__file__).resolve()), "--sentences", str(sentences)]
    command += ["--repeats", str(repeats), "--model", model]
    done = subprocess.run(
        command, env=_clean_env(), cwd=ROOT, capture_output=True, text=True, check=True
    )
    lines = done.stdout.strip().splitlines()
    for line in lines[:-1]:
        say(line)
    return dict(json.loads(lines[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=sorted(SHAPES), default=DEFAULT_MODEL)
    args = parser.parse_args()
    if not _blas_is_clean():
        # Re-execute with the variables unset: OpenBLAS reads them when numpy loads it.
        os.execve(sys.executable, [sys.executable, *sys.argv], _clean_env())
    result = measure(sentences=args.sentences, repeats=args.repeats, model=args.model)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
