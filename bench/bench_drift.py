"""Calibrate the drift monitor: the bundled replay texts against a model's references.

Scores the replay texts (``producers/data/replay/texts.jsonl``) with the full ensemble and
compares their label mix and confidence histogram with the model's reference distribution
(its predictions on the test split: from the artifact when it stores one, else computed
here), for the whole replay, per kind (news / post), and for random "hours" of N posts
(sampling noise, which decides ``stream.drift_min_records``).

With ``--input`` (the default) it also builds the model's input reference on the validation
split, per source (``model_export.reference``), and runs the worker's per-source input-drift
tests (PSI with KS / chi-square) on each replay kind against the source it stands for, and on
random hours of N posts: the share of hours with any drifted feature is the false-alarm rate
of in-distribution traffic at that window size.

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
from scoring.drift import (  # noqa: E402
    InputReference,
    LiveSample,
    ReferenceDistribution,
    confidence_bin,
    judge_source,
    post_features,
)
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
    parser.add_argument(
        "--input", action=argparse.BooleanOptionalAction, default=True, help="input drift too"
    )
    parser.add_argument("--rows-per-source", type=int, default=1500, help="validation rows per source")
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
    if args.input:
        input_drift(runtime, texts, kinds, proba, args, settings)
    return 0


KIND_SOURCE = {"news": "news", "post": "reddit"}
"""The replay's kinds and the live source each stands for (stock tweets: social posts)."""


def input_drift(
    runtime: SentimentRuntime,
    texts: list[str],
    kinds: np.ndarray,
    proba: np.ndarray,
    args: argparse.Namespace,
    settings: object,
) -> None:
    """Per-source input-drift verdicts of the replay against the validation-split reference."""
    import time

    from model_export.reference import compute_reference, validation_frame

    t0 = time.perf_counter()
    frame = validation_frame(runtime.metadata, max_rows_per_source=args.rows_per_source)
    reference = compute_reference(runtime, frame, model_version=str(runtime.model_version))
    stream = settings.stream  # type: ignore[attr-defined]
    sizes = {s: r.n for s, r in reference.sources.items()}
    print()
    print(f"input reference: validation split, rows per source {sizes} ({time.perf_counter() - t0:.0f} s)")
    coins = [runtime.tag_coins(t) for t in texts]

    def sample(idx: np.ndarray, source: str, ref: InputReference) -> LiveSample:
        live = LiveSample()
        src = ref.for_source(source)
        for i in idx:
            p = proba[i]
            label = ("negative", "neutral", "positive")[int(p.argmax())]
            live.add(*post_features(texts[i], coins[i], label, float(p.max()), src, ref.vocabulary))
        return live

    def judge(idx: np.ndarray, source: str) -> tuple[str, dict[str, tuple[float, float, bool]]]:
        verdict = judge_source(
            source,
            reference.for_source(source),
            sample(idx, source, reference),
            min_records=min(stream.drift_min_records, len(idx)),
            psi_threshold=stream.drift_psi_threshold,
            alpha=stream.drift_p_value,
        )
        return verdict.status.value, {f.feature: (f.psi, f.p_value, f.drifted) for f in verdict.features}

    features = ("length", "confidence", "oov", "distance", "label", "coin")
    print()
    print("| replay texts | judged as source | n | status | " + " | ".join(features) + " |")
    print("|---|---|---:|---|" + "---:|" * len(features))
    groups = [("all", np.arange(len(texts)), "replay")] + [
        (f"kind={k}", np.flatnonzero(kinds == k), KIND_SOURCE.get(k, k)) for k in sorted(set(kinds))
    ]
    for name, idx, source in groups:
        status, found = judge(idx, source)
        cells = [
            f"{found[f][0]:.2f} (p {found[f][1]:.1g}){' **drift**' if found[f][2] else ''}"
            if f in found
            else "-"
            for f in features
        ]
        print(f"| {name} | {source} | {len(idx)} | {status} | " + " | ".join(cells) + " |")
    print()
    print(f"random hours of replay news judged as news ({args.samples} per size): PSI median / max, alarms")
    print()
    print("| posts per hour | " + " | ".join(features) + " | hours with any drift |")
    print("|---:|" + "---:|" * (len(features) + 1))
    news = np.flatnonzero(kinds == "news")
    rng = np.random.default_rng(args.seed)
    for size in args.sizes:
        runs = [judge(rng.choice(news, size), "news")[1] for _ in range(args.samples)]
        cells = []
        for f in features:
            values = [r[f][0] for r in runs if f in r]
            cells.append(f"{np.median(values):.2f} / {max(values):.2f}" if values else "-")
        alarms = sum(any(v[2] for v in r.values()) for r in runs)
        print(f"| {size} | " + " | ".join(cells) + f" | {alarms} / {len(runs)} |")


if __name__ == "__main__":
    raise SystemExit(main())
