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
    """The results tables; with a refit, also the figures from before it and the combiner's choice."""
    lines = _results(report)
    if "before_refit" in report:
        lines += ["", "Before the release refit (members on the train split only), same test rows:", ""]
        lines += _systems_table(report["before_refit"])
    if "combiner_selection" in report:
        lines += ["", *_selection(report["combiner_selection"])]
    return "\n".join(lines)


def _systems_table(report: dict[str, Any]) -> list[str]:
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
    return lines


def _results(report: dict[str, Any]) -> list[str]:
    lines = _systems_table(report)
    datasets = [d for d in DATASET_NAMES if d in report["datasets"]]
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
    return lines


def _selection(selection: dict[str, Any]) -> list[str]:
    """Which members the combiner kept: out-of-fold weighted F1 on the validation split."""
    candidates = selection.get("candidates", [])
    if not candidates:
        why = selection.get("skipped") or "no selection run"
        return [f"Combiner members: {', '.join(selection['members'])} ({why})."]
    policy = selection.get("policy", {})
    datasets = [d for d in DATASET_NAMES if d in candidates[0]["datasets"]]
    weightings = policy.get("weightings") or ["datasets" if policy.get("balance_datasets", True) else "rows"]
    lines = [
        f"Combiner member choice ({policy.get('folds', 5)}-fold cross-validation on the validation split, "
        f"every dataset weighing the same in the mean; rows weighed in the fit by: {', '.join(weightings)}; "
        f"eligible: no dataset more than {policy.get('tolerance', 0.01)} below the transformer alone):",
        "",
        "| members | fit weighting | mean | "
        + " | ".join(DATASET_NAMES[d] for d in datasets)
        + " | eligible |",
        "|" + "---|" * (4 + len(datasets)),
    ]
    for c in candidates:
        name = " + ".join(c["members"]) + (" **(chosen)**" if c.get("chosen") else "")
        weighting = c.get("weighting", weightings[0] if "mean_f1" in c else "-")
        mean = f"{c['mean_f1']:.3f}" if "mean_f1" in c else "-"
        eligible = ("yes" if c["eligible"] else "no") if "eligible" in c else "-"
        cells = " | ".join(f"{c['datasets'][d]:.3f}" for d in datasets)
        lines.append(f"| {name} | {weighting} | {mean} | {cells} | {eligible} |")
    dropped = selection.get("dropped") or []
    lines += ["", f"Dropped: {', '.join(dropped) if dropped else 'none'}."]
    return lines


if __name__ == "__main__":
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text())) + "\n")
