"""Prediction drift: how far live predictions have moved from the model's reference.

Each trained model stores, in its artifact's ``metadata.json``, the distribution of its
own predictions on the held-out test split (``reference``): the share of each label and
the histogram of the calibrated confidence. Live predictions are compared with it by the
Population Stability Index, the usual monitoring statistic for this (design document 6.3,
"distance metrics"): PSI = sum((a - e) * ln(a / e)) over the bins. Rules of thumb: below
0.1 no shift, 0.1-0.25 a moderate one, above 0.25 a significant one.

Two signals, because they fail differently: the label mix moves when the market mood (or
the feed) changes, the confidence histogram sinks when the inputs no longer look like
anything the model was trained on (out-of-distribution text, a new slang, a broken
cleaner), which is the earliest sign that accuracy is dropping without any labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CONFIDENCE_EDGES: tuple[float, ...] = tuple(float(x) for x in np.linspace(1 / 3, 1.0, 11))
"""Ten equal bins over the possible range of a 3-class top probability."""
_EPS = 1e-4


def confidence_bin(confidence: float) -> int:
    """Index of ``confidence`` in :data:`CONFIDENCE_EDGES` (values outside are clipped)."""
    index = int(np.searchsorted(CONFIDENCE_EDGES, confidence, side="right")) - 1
    return min(max(index, 0), len(CONFIDENCE_EDGES) - 2)


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population Stability Index of two distributions over the same bins (shares or counts)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("psi needs two non-empty distributions over the same bins")
    e = np.clip(e / e.sum(), _EPS, None)
    a = np.clip(a / a.sum(), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class ReferenceDistribution:
    """The model's own predictions on held-out data: label shares and confidence histogram."""

    n: int
    label_shares: tuple[float, ...]
    confidence_shares: tuple[float, ...]
    split: str = "test"

    @classmethod
    def from_probabilities(cls, proba: np.ndarray, split: str = "test") -> ReferenceDistribution:
        """From an (n, 3) array of calibrated class probabilities."""
        proba = np.asarray(proba, dtype=np.float64)
        if proba.ndim != 2 or proba.shape[0] == 0:
            raise ValueError("need a non-empty (n, classes) probability array")
        labels = np.bincount(proba.argmax(axis=1), minlength=proba.shape[1])
        bins = np.bincount(
            [confidence_bin(c) for c in proba.max(axis=1)], minlength=len(CONFIDENCE_EDGES) - 1
        )
        n = int(proba.shape[0])
        return cls(
            n=n,
            label_shares=tuple(round(float(x) / n, 6) for x in labels),
            confidence_shares=tuple(round(float(x) / n, 6) for x in bins),
            split=split,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "split": self.split,
            "label_shares": list(self.label_shares),
            "confidence_edges": [round(x, 6) for x in CONFIDENCE_EDGES],
            "confidence_shares": list(self.confidence_shares),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ReferenceDistribution:
        edges = raw.get("confidence_edges")
        if edges is not None and len(edges) != len(CONFIDENCE_EDGES):
            raise ValueError(
                f"reference has {len(edges) - 1} confidence bins, expected {len(CONFIDENCE_EDGES) - 1}"
            )
        return cls(
            n=int(raw["n"]),
            label_shares=tuple(float(x) for x in raw["label_shares"]),
            confidence_shares=tuple(float(x) for x in raw["confidence_shares"]),
            split=str(raw.get("split", "test")),
        )

    def drift(self, label_counts: Sequence[int], confidence_counts: Sequence[int]) -> dict[str, float]:
        """PSI of live label counts and confidence-bin counts against this reference."""
        return {
            "labels": round(psi(self.label_shares, label_counts), 6),
            "confidence": round(psi(self.confidence_shares, confidence_counts), 6),
        }
