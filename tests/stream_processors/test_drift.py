"""The worker's prediction-drift monitor: windows per model version, PSI, alerts."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from schemas.events import ScoredPost, SentimentLabel, Source, content_hash
from scoring.drift import ReferenceDistribution
from stream_processors.drift import DriftMonitor
from tests.stream_processors.fakes import FakeRuntime

pytestmark = pytest.mark.unit

T0 = 1_764_345_600.0  # 2025-11-28 16:00:00 UTC, an hour boundary
LABELS = (SentimentLabel.NEGATIVE, SentimentLabel.NEUTRAL, SentimentLabel.POSITIVE)


def post(i: int, label: int, confidence: float, version: str = "m/1") -> ScoredPost:
    text = f"post {i} about bitcoin"
    p = [(1 - confidence) / 2] * 3
    p[label] = confidence
    return ScoredPost(
        source_id=f"t3_d{i}",
        event_time=datetime.fromtimestamp(T0, UTC),
        source=Source.REDDIT,
        text=text,
        original_length=len(text),
        coins=["bitcoin"],
        content_hash=content_hash(text),
        label=LABELS[label],
        score=p[2] - p[0],
        confidence=confidence,
        p_negative=p[0],
        p_neutral=p[1],
        p_positive=p[2],
        model_version=version,
        scored_time=datetime.fromtimestamp(T0, UTC),
    )


def reference() -> ReferenceDistribution:
    """Confident, neutral-heavy predictions: 30 % / 50 % / 20 %, confidence ~0.85."""
    rows = []
    for label, n in ((0, 300), (1, 500), (2, 200)):
        for _ in range(n):
            p = np.full(3, 0.075)
            p[label] = 0.85
            rows.append(p)
    return ReferenceDistribution.from_probabilities(np.asarray(rows))


def test_matching_window_is_quiet_and_a_shift_alerts_once() -> None:
    monitor = DriftMonitor(window_s=3600, min_records=100, threshold=0.25)
    monitor.follow(FakeRuntime("m/1", reference()))
    monitor.follow(FakeRuntime("m/1"))  # a version's reference is read once, when it first scores
    like_reference = [post(i, label, 0.85) for i, label in enumerate([0] * 30 + [1] * 50 + [2] * 20)]
    monitor.record(like_reference, now=T0 + 10)
    (report,) = monitor.closed(T0 + 3600)
    assert report.records == 100 and report.breaches == ()
    assert report.psi["labels"] < 0.01 and report.psi["confidence"] < 0.01

    unsure_and_bearish = [post(i, 0, 0.45) for i in range(150)]
    monitor.record(unsure_and_bearish, now=T0 + 3600 + 5)
    assert monitor.closed(T0 + 7199) == []  # window still open
    (report,) = monitor.closed(T0 + 7200)
    assert report.breaches == ("labels", "confidence")
    alerts = monitor.alerts(report)
    assert [a.kind for a in alerts] == ["model_drift", "model_drift"]
    assert alerts[0].source_id == "model_drift:labels:m/1:2025-11-28T17:00:00+00:00"
    assert alerts[1].severity.value == "critical" and alerts[1].window is not None
    assert "the confidence of its predictions drifted" in alerts[1].message
    assert monitor.closed(T0 + 99_999) == []  # reported once


def test_versions_without_reference_or_enough_posts_are_not_judged() -> None:
    monitor = DriftMonitor(window_s=3600, min_records=100)
    monitor.follow(FakeRuntime("old/1"))
    monitor.follow(FakeRuntime("m/2", reference()))
    monitor.record([post(i, 0, 0.4, version="old/1") for i in range(500)], now=T0)
    monitor.record([post(i, 0, 0.4, version="m/2") for i in range(20)], now=T0)
    assert monitor.closed(T0 + 3600) == []
