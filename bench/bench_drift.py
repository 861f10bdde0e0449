"""Calibrate the prediction-drift monitor: PSI of the bundled replay texts against a model's reference.

Scores the replay texts (``producers/data/replay/texts.jsonl``) with the full ensemble and
compares their label mix and confidence histogram with the model's reference distribution
(its predictions on the test split: from the artifact when it stores one, else computed
here), for the whole replay, per kind (news / post), and for random "hours" of N posts
(sampling noise, which decides ``stream.drift_min_records``).

    .venv/bin/python bench/bench_drift.py --model models:/cryptopulse-sentiment@champion [--samples 30]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.settings import get_settings  # noqa: E402
from scoring.drift import ReferenceDistribution, confidence_bin  # noqa: E402
from scoring.runtime import SentimentRuntime  # noqa: E402

REPLAY = REPO / "producers" / "data" / "replay" / "texts.jsonl"


def counts(proba: np.ndarray) -> tuple[list[int], list[int]]:
    """Label counts and confidence-bin counts, as the worker's drift monitor keeps them."""
    labels = np.bincount(proba.argmax(axis=1), minlength=3)
    confidence = np.bincount([confidence_bin(c) for c in proba.max(axis=1)], minlength=10)
    return [int(x) for x in labels], [int(x) for x in confidence]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="artifact dir or models:/ URI (default: settings)")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[200, 500, 1000], help="posts per sampled hour"
    )
    parser.add_argument("--samples", type=int, default=30, help="sampled hours per size")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    settings = get_settings()
    runtime = SentimentRuntime.load(args.model or settings.model.uri, settings, threads=2)
    reference = runtime.reference
    source = "artifact"
    if reference is None:
        from model_export.data import load_corpus

        corpus = load_corpus(seed=settings.model.seed)
        test = corpus[corpus["split"] == "test"]["text"].tolist()
        reference = ReferenceDistribution.from_probabilities(runtime.ensemble_proba(test))
        source = "computed from the test split"
    rows = [json.loads(line) for line in REPLAY.read_text("utf-8").splitlines() if line.strip()]
    texts = [str(r["text"]) for r in rows]
    kinds = np.asarray([str(r.get("kind", "?")) for r in rows])
    proba = runtime.ensemble_proba(texts)
    print(f"model {runtime.model_version}; reference: {source} (n={reference.n}); {len(texts)} replay texts")
    print()
    print("| texts | n | PSI labels | PSI confidence |")
    print("|---|---:|---:|---:|")
    groups = {"all": np.ones(len(texts), dtype=bool)} | {f"kind={k}": kinds == k for k in sorted(set(kinds))}
    for name, mask in groups.items():
        psi = reference.drift(*counts(proba[mask]))
        print(f"| {name} | {int(mask.sum())} | {psi['labels']:.3f} | {psi['confidence']:.3f} |")
    print()
    print(f"random hours of the whole replay ({args.samples} per size): median / max PSI")
    print()
    print("| posts per hour | labels median | labels max | confidence median | confidence max |")
    print("|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(args.seed)
    for size in args.sizes:
        drifts = [reference.drift(*counts(proba[rng.choice(len(texts), size)])) for _ in range(args.samples)]
        lab = [d["labels"] for d in drifts]
        conf = [d["confidence"] for d in drifts]
        print(f"| {size} | {np.median(lab):.3f} | {max(lab):.3f} | {np.median(conf):.3f} | {max(conf):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
