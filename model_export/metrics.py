"""Evaluation metrics for the model card and MLflow: quality, calibration and speed."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)

from scoring.labels import LABELS


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = 15) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins (top-label ECE)."""
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def classification_metrics(
    y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None = None
) -> dict[str, float]:
    """Accuracy, weighted/macro F1, per-class P/R/F1 and, with probabilities, log loss and ECE."""
    labels = list(range(len(LABELS)))
    out = {
        "accuracy": float(accuracy_score(y, pred)),
        "weighted_f1": float(f1_score(y, pred, average="weighted", labels=labels, zero_division=0)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=labels, zero_division=0)),
        "n": float(len(y)),
    }
    p, r, f, _ = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    for i, name in enumerate(LABELS):
        out[f"precision_{name}"] = float(p[i])
        out[f"recall_{name}"] = float(r[i])
        out[f"f1_{name}"] = float(f[i])
    if proba is not None:
        clipped = np.clip(proba, 1e-7, 1.0)
        out["log_loss"] = float(log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), labels=labels))
        out["ece"] = expected_calibration_error(y, proba)
    return out


def confusion_matrix_png(y: np.ndarray, pred: np.ndarray, path: Path, title: str) -> Path:
    """Confusion matrix image (rows true, columns predicted) for MLflow and the model card."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion_matrix(y, pred, labels=list(range(len(LABELS))))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(LABELS)), LABELS)
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def latency_profile(
    score: Callable[[Sequence[str]], object],
    texts: Sequence[str],
    singles: int = 200,
    batch: int = 32,
    batch_texts: int = 1024,
) -> dict[str, float]:
    """Single-text p50/p95/p99 latency (ms) and batched throughput (texts/s) of a scoring callable."""
    sample = [texts[i % len(texts)] for i in range(singles)]
    for t in sample[:10]:
        score([t])
    timings = []
    for t in sample:
        start = time.perf_counter()
        score([t])
        timings.append((time.perf_counter() - start) * 1000)
    many = [texts[i % len(texts)] for i in range(batch_texts)]
    start = time.perf_counter()
    for i in range(0, len(many), batch):
        score(many[i : i + batch])
    elapsed = time.perf_counter() - start
    arr = np.asarray(timings)
    return {
        "latency_p50_ms": float(np.percentile(arr, 50)),
        "latency_p95_ms": float(np.percentile(arr, 95)),
        "latency_p99_ms": float(np.percentile(arr, 99)),
        "throughput_texts_per_s": float(len(many) / elapsed),
    }
