"""Occlusion explanations: the spans that move the served ensemble, on a known function and the tiny model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from model_export.train import TrainResult
from scoring.explain import MAX_WORDS, ProbaFn, explain_text
from scoring.runtime import SentimentRuntime


def fake_proba(rules: dict[str, float]) -> ProbaFn:
    """p(positive) = 0.1 + the weights of the rule words present; the rest split evenly."""

    def proba(texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            words = text.split()
            p_pos = min(0.1 + sum(w for word, w in rules.items() if word in words), 0.98)
            rows.append([(1 - p_pos) / 2, (1 - p_pos) / 2, p_pos])
        return np.array(rows)

    return proba


def test_the_word_that_drives_the_label_comes_first_with_its_offsets() -> None:
    text = "Bitcoin heads to the moon today"
    explanation = explain_text(text, fake_proba({"moon": 0.6, "Bitcoin": 0.1}))
    assert explanation.label == "positive" and explanation.probability == pytest.approx(0.8)
    first = explanation.contributions[0]
    assert (first.text, text[first.start : first.end]) == ("moon", "moon")
    assert first.weight == pytest.approx(0.6)
    assert [c.text for c in explanation.contributions] == ["moon", "Bitcoin"]  # nothing without weight


def test_a_phrase_wins_only_when_it_says_more_than_its_words() -> None:
    explanation = explain_text(
        "really great news for holders",
        fake_proba({"great": 0.3, "news": 0.3}),
    )
    assert explanation.contributions[0].text == "great news"
    assert explanation.contributions[0].weight == pytest.approx(0.6)
    # Spans never overlap.
    covered = [set(range(c.start, c.end)) for c in explanation.contributions]
    assert all(a.isdisjoint(b) for i, a in enumerate(covered) for b in covered[i + 1 :])


def test_long_texts_weigh_only_the_first_words_in_one_batch() -> None:
    calls: list[int] = []
    inner = fake_proba({"gain": 0.5})

    def counting(texts: Sequence[str]) -> np.ndarray:
        calls.append(len(texts))
        return inner(texts)

    text = " ".join(["word"] * 200 + ["gain"])
    explanation = explain_text(text, counting)
    assert calls == [1 + MAX_WORDS + MAX_WORDS - 1]
    assert explanation.contributions == []  # "gain" is past the weighed words


def test_tiny_model_explanations_point_into_the_text(tiny: TrainResult) -> None:
    runtime = SentimentRuntime(tiny.artifact_dir, model_version="tiny/1", batch_size=16)
    text = "Exchange hacked, funds lost and withdrawals frozen"
    explanation = explain_text(text, runtime.ensemble_proba, k=3)
    assert explanation.label in {"negative", "neutral", "positive"}
    assert len(explanation.contributions) <= 3
    for c in explanation.contributions:
        assert text[c.start : c.end] == c.text and c.weight > 0
