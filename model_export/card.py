"""Render the evaluation tables of docs/model-card.md from a training run's evaluation.json.

Keeping the tables generated (not hand-typed) means the card always matches a real run:
``python -m model_export.card CACHE/training/RUN/evaluation.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SYSTEMS = (
    ("ensemble", "**ensemble** (MiniLM int8 + TF-IDF LR + crypto lexicon, stacked)"),
    ("transformer", "MiniLM fine-tuned, int8 ONNX (member alone)"),
    ("baseline_tfidf_lr", "baseline: TF-IDF + logistic regression"),
    ("baseline_vader", "baseline: VADER (plain)"),
    ("crypto_lexicon", "VADER + crypto lexicon (member alone)"),
    ("baseline_majority", "baseline: majority class"),
)
DATASET_NAMES = {
    "financial_phrasebank": "Financial PhraseBank 50Agree",
    "cryptolin": "CryptoLin",
    "tweeteval": "TweetEval sentiment",
    "twitter_financial_news": "Twitter Financial News",
    "stock_tweets": "Stock tweets",
}


def render(report: dict[str, Any]) -> str:
    lines: list[str] = []
    datasets = [d for d in DATASET_NAMES if d in report["datasets"]]
    header = "| system | all (weighted F1) | " + " | ".join(DATASET_NAMES[d] for d in datasets) + " |"
    lines += [header, "|" + "---|" * (2 + len(datasets))]
    for key, label in SYSTEMS:
        overall = report["overall"].get(key)
        if overall is None:
            continue
        cells = [f"{overall['weighted_f1']:.3f}"]
        cells += [f"{report['datasets'][d][key]['weighted_f1']:.3f}" for d in datasets]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    n_row = "| test rows | " + str(int(report["overall"]["ensemble"]["n"])) + " | "
    n_row += " | ".join(str(int(report["datasets"][d]["ensemble"]["n"])) for d in datasets) + " |"
    lines.append(n_row)
    e = report["overall"]["ensemble"]
    lines += [
        "",
        "Ensemble, all test rows:",
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {e['accuracy']:.3f} |",
        f"| weighted F1 | {e['weighted_f1']:.3f} |",
        f"| macro F1 | {e['macro_f1']:.3f} |",
        f"| log loss | {e['log_loss']:.3f} |",
        f"| expected calibration error (15 bins) | {e['ece']:.3f} |",
    ]
    lines += ["", "| class | precision | recall | F1 |", "|---|---|---|---|"]
    for name in ("negative", "neutral", "positive"):
        lines.append(
            f"| {name} | {e[f'precision_{name}']:.3f} | {e[f'recall_{name}']:.3f} | {e[f'f1_{name}']:.3f} |"
        )
    lines += [
        "",
        "Ensemble per dataset:",
        "",
        "| dataset | accuracy | weighted F1 | macro F1 | log loss | ECE |",
        "|---|---|---|---|---|---|",
    ]
    for d in datasets:
        m = report["datasets"][d]["ensemble"]
        lines.append(
            f"| {DATASET_NAMES[d]} | {m['accuracy']:.3f} | {m['weighted_f1']:.3f} | {m['macro_f1']:.3f} | "
            f"{m['log_loss']:.3f} | {m['ece']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text())) + "\n")
