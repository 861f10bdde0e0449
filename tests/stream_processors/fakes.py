"""Small fakes for unit tests of batching and hot-swap logic only (never integration)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FakeScore:
    label: str | None
    score: float | None
    confidence: float | None
    p_negative: float | None
    p_neutral: float | None
    p_positive: float | None
    model_version: str
    error: str | None = None


class FakeRuntime:
    """Scores "bad" texts as errors, everything else positive; records each call's batch."""

    def __init__(self, version: str = "fake/1", reference: object | None = None) -> None:
        self.model_version = version
        self.reference = reference  # a scoring.drift.ReferenceDistribution, or None
        self.calls: list[list[str]] = []

    def score(self, texts: Sequence[object]) -> list[FakeScore]:
        self.calls.append([str(t) for t in texts])
        return [
            FakeScore(None, None, None, None, None, None, self.model_version, "refused")
            if "refuse-me" in str(t)
            else FakeScore("positive", 0.5, 0.7, 0.1, 0.3, 0.6, self.model_version)
            for t in texts
        ]
