"""Why the ensemble gave its label: the words and phrases whose removal changes the verdict most.

Occlusion on the whole served ensemble (transformer, linear member, lexicon and combiner
together), not on one member's weights: each candidate span (every word, and every pair of
adjacent words, so "not bad" can count as a phrase) is removed from the text, the variants are
scored in one batch, and a span's weight is how much the probability of the predicted label
falls without it. Faithful to what was served, model-agnostic, and cheap for headline-sized
texts: about 2n variants for n words, scored as one batch.

Long texts are explained on their first :data:`MAX_WORDS` words (the rest stays in every
variant), which keeps one explanation under a few hundred variants.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from scoring.labels import LABELS

MAX_WORDS = 48
"""Words considered as candidates; later words stay in every variant but are not weighed."""

_WORD = re.compile(r"\S+")

ProbaFn = Callable[[Sequence[str]], np.ndarray]
"""Texts -> ensemble probabilities (rows in ``LABELS`` order), e.g. ``runtime.ensemble_proba``."""


@dataclass(frozen=True)
class Contribution:
    """One span of the text and how much it pushed towards the label (probability points)."""

    text: str
    start: int  # character offsets in the original text
    end: int
    weight: float


@dataclass(frozen=True)
class Explanation:
    label: str
    probability: float
    contributions: list[Contribution]


def explain_text(text: str, proba: ProbaFn, k: int = 5) -> Explanation:
    """The ``k`` non-overlapping spans that support the predicted label most (weight > 0)."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)][:MAX_WORDS]
    spans = [(i, i + 1) for i in range(len(words))] + [(i, i + 2) for i in range(len(words) - 1)]
    variants = [text] + [_without(text, words[a][0], words[b - 1][1]) for a, b in spans]
    p = proba(variants)
    label = int(np.argmax(p[0]))
    base = float(p[0, label])
    weights = base - p[1:, label]
    candidates = sorted(zip(weights.tolist(), spans, strict=True), key=lambda t: -t[0])
    chosen: list[Contribution] = []
    taken: set[int] = set()
    for weight, (a, b) in candidates:
        if weight <= 0 or len(chosen) >= k:
            break
        if taken.intersection(range(a, b)):
            continue
        if b - a == 2 and weight <= max(_word_weight(weights, spans, a), _word_weight(weights, spans, a + 1)):
            continue  # a phrase only when it says more than its best word alone
        taken.update(range(a, b))
        start, end = words[a][0], words[b - 1][1]
        chosen.append(Contribution(text[start:end], start, end, round(weight, 6)))
    return Explanation(LABELS[label], round(base, 6), chosen)


def _without(text: str, start: int, end: int) -> str:
    rest = (text[:start] + " " + text[end:]).split()
    return " ".join(rest) if rest else "."


def _word_weight(weights: np.ndarray, spans: list[tuple[int, int]], word: int) -> float:
    return float(weights[spans.index((word, word + 1))])
