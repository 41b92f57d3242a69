"""Benchmark: the local encoder's FLOP rate against this machine's float32 GEMM rate, one run.

    .venv/bin/python bench/embed_encoder.py [--sentences 256] [--repeats 3]

1. GEMM rate: numpy float32 matmuls of the encoder's own shapes, (M x 384) @ (384 x 1152 |
   384 | 1536) and (M x 1536) @ (1536 x 384), for M = 2048 and 4096 token rows (the size of
   the encoder's batches), best of 7 runs each; the better M's aggregate rate is the
   machine's rate. Measured before and after the encoder, the best of both kept, so a
   neighbour's load that slows one phase does not flatter the ratio.
2. Encoder: `LocalEmbeddingProvider.embed()` (tokenization included) over `sentences`
   e-mail-like texts of 8 to 256 tokens (the lengths are printed), best of `repeats` runs.
3. Model FLOPs per sentence of L tokens, counted analytically over its real tokens (padding is
   the encoder's cost, not credited), multiply-add = 2 FLOPs, per layer of 6, with d = 384:
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

HIDDEN, FFN, LAYERS = 384, 1536, 6


def model_flops(tokens: int) -> int:
    """FLOPs of one sentence of `tokens` tokens (see the module docstring)."""
    d, n = HIDDEN, tokens
    per_layer = 2 * n * (4 * d * d) + 2 * n * (2 * d * FFN) + 4 * n * n * d
    return LAYERS * per_layer


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


def gemm_rate(repeats: int = 7) -> float:
    """FLOP/s of float32 matmuls of the encoder's shapes: the better of M = 2048 and 4096 rows."""
    import numpy as np

    rng = np.random.default_rng(0)
    best_rate = 0.0
    for rows in (2048, 4096):
        shapes = [(rows, HIDDEN, 3 * HIDDEN), (rows, HIDDEN, HIDDEN), (rows, HIDDEN, FFN)]
        shapes.append((rows, FFN, HIDDEN))
        flops, seconds = 0, 0.0
        for m, k, n in shapes:
            a = rng.standard_normal((m, k), dtype=np.float32)
            b = rng.standard_normal((k, n), dtype=np.float32)
            a @ b  # warm-up
            best = min(_timed(lambda a=a, b=b: a @ b) for _ in range(repeats))
            flops += 2 * m * k * n
            seconds += best
        best_rate = max(best_rate, flops / seconds)
    return best_rate


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _measure_here(sentences: int, repeats: int, say: Any) -> dict[str, Any]:
    import numpy as np

    from search.embedding.local import LocalEmbeddingProvider, locate_weights

    blas = blas_info()
    say(
        f"BLAS: {blas['library']} {blas['version']}, kernel {blas['kernel']}, "
        f"threads {blas['threads']} (from {blas['source']}); "
        f"unset for this run: {os.environ.get(UNSET_MARK, '-')}"
    )
    source = locate_weights(model_dir=None)
    provider = LocalEmbeddingProvider(source)
    texts = email_like_texts(sentences)
    lengths = [min(provider.count_tokens(t), provider.max_tokens) for t in texts]
    flops = sum(model_flops(n) for n in lengths)
    say(
        f"workload: {sentences} e-mail-like texts, tokens min {min(lengths)} / median "
        f"{statistics.median(lengths):g} / mean {statistics.fmean(lengths):.1f} / max "
        f"{max(lengths)}; {flops / sentences / 1e9:.2f} GFLOP per sentence on average"
    )
    gemm_before = gemm_rate()
    say(f"GEMM float32 (encoder shapes): {gemm_before / 1e9:.1f} GFLOP/s")
    provider.embed(texts[:64])  # load the weights, warm up
    runs = []
    for _ in range(repeats):
        runs.append(_timed(lambda: provider.embed(texts)))
        say(f"encoder: {sentences / runs[-1]:.1f} sentences/s")
    gemm_after = gemm_rate()
    gemm = max(gemm_before, gemm_after)
    say(f"GEMM float32 again: {gemm_after / 1e9:.1f} GFLOP/s (best {gemm / 1e9:.1f})")
    best = min(runs)
    achieved = flops / best
    result = {
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


def measure(*, sentences: int = 256, repeats: int = 3, quiet: bool = False) -> dict[str, Any]:
    """The encoder's figures (see the module docstring), measured without the OpenBLAS
    variables: in a child process when this one has them."""

    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    if _blas_is_clean():
        return _measure_here(sentences, repeats, say)
    command = [sys.executable, str(Path(__file__).resolve()), "--sentences", str(sentences)]
    command += ["--repeats", str(repeats)]
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
    args = parser.parse_args()
    if not _blas_is_clean():
        # Re-execute with the variables unset: OpenBLAS reads them when numpy loads it.
        os.execve(sys.executable, [sys.executable, *sys.argv], _clean_env())
    result = measure(sentences=args.sentences, repeats=args.repeats)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
