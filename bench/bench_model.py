"""Benchmark the full sentiment ensemble runtime: latency of one text and batched throughput.

Runs every combination of {int8, fp32} x {1, 2 intra-op threads} on real test-split texts
and prints a Markdown table (paste it into docs/benchmarks.md, "## Model runtime"). Each
combination is measured ``--repeats`` times and every figure is the median of the repeats
(the machines are shared and noisy).

    .venv/bin/python bench/bench_model.py --model PATH_OR_models:/URI [--fp32-onnx FILE]

``--fp32-onnx`` defaults to ``model_fp32.onnx`` next to a training run's ``artifact/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from core.settings import get_settings
from scoring.runtime import SentimentRuntime


def _texts(n: int, seed: int) -> list[str]:
    from model_export.data import load_corpus

    corpus = load_corpus(seed=13)
    test = corpus[corpus["split"] == "test"]
    return test.sample(n=min(n, len(test)), random_state=seed)["text"].tolist()


def measure(runtime: SentimentRuntime, texts: list[str], singles: int, batch: int) -> dict[str, float]:
    for t in texts[:20]:
        runtime.score([t])
    lat = []
    for t in texts[:singles]:
        start = time.perf_counter()
        runtime.score([t])
        lat.append((time.perf_counter() - start) * 1000)
    runtime.batch_size = batch
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        runtime.score(texts[i : i + batch])
    elapsed = time.perf_counter() - start
    arr = np.asarray(lat)
    return {
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "p99": float(np.percentile(arr, 99)),
        "tps": len(texts) / elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="artifact dir or models:/ URI (default: settings.model.uri)"
    )
    parser.add_argument("--fp32-onnx", type=Path, default=None, help="fp32 ONNX of the same model")
    parser.add_argument("--texts", type=int, default=2048, help="texts for the throughput run")
    parser.add_argument("--singles", type=int, default=500, help="single-text calls for latency")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per combination; medians")
    args = parser.parse_args()
    settings = get_settings()
    ref = args.model or settings.model.uri
    base = SentimentRuntime.load(ref, settings)
    fp32 = args.fp32_onnx or base.path.parent / "model_fp32.onnx"
    texts = _texts(args.texts, seed=7)
    variants = [("int8", None)] + ([("fp32", fp32)] if fp32.is_file() else [])
    if not fp32.is_file():
        print(f"(no fp32 ONNX at {fp32}; int8 only)")
    print(
        f"model {base.model_version}; {len(texts)} test-split texts; batch {args.batch}; "
        f"median of {args.repeats} runs; "
        f"{machine()}"
    )
    print()
    print("| weights | threads | p50 ms (1 text) | p95 ms | p99 ms | texts/s (batch) |")
    print("|---|---|---|---|---|---|")
    for name, onnx in variants:
        for threads in (int(t) for t in args.threads.split(",")):
            rt = SentimentRuntime.load(ref, settings, onnx_file=onnx, threads=threads)
            runs = [measure(rt, texts, args.singles, args.batch) for _ in range(args.repeats)]
            m = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
            print(
                f"| {name} | {threads} | {m['p50']:.2f} | {m['p95']:.2f} | {m['p99']:.2f} | {m['tps']:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
