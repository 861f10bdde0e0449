"""The worker's drift monitor: prediction PSI per version, input drift per source, alerts, gauges."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from schemas.events import ScoredPost, SentimentLabel, Source, content_hash
from scoring.drift import InputReference, ReferenceDistribution, ReferenceRow, SourceStatus
from stream_processors.drift import RETRY_S, DriftMonitor
from stream_processors.monitors.drift import export_metrics
from tests.stream_processors.fakes import FakeRuntime

pytestmark = pytest.mark.unit

T0 = 1_764_345_600.0  # 2025-11-28 16:00:00 UTC, an hour boundary
LABELS = (SentimentLabel.NEGATIVE, SentimentLabel.NEUTRAL, SentimentLabel.POSITIVE)
LABELS_TEXT = [label.value for label in LABELS]


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
    reports = {r.model_version: r for r in monitor.closed(T0 + 3600)}
    assert reports["old/1"].psi == {} and reports["m/2"].psi == {}  # no reference / too few posts
    # no input reference either: each source is reported as such, never flagged
    assert [(v.source, v.status) for v in reports["old/1"].sources] == [("reddit", SourceStatus.NO_REFERENCE)]
    assert all(monitor.alerts(r) == [] for r in reports.values())


# -- input drift, per source ---------------------------------------------------------------

SOCIAL = ["moon", "hodl", "pump", "lol", "buy", "dip", "wagmi", "rekt", "bitcoin", "to", "the"]
NEWS = ["shares", "market", "regulator", "billion", "report", "quarter", "bank", "bitcoin", "said"]


def social_text(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(SOCIAL, size=int(rng.integers(4, 12))))


def news_text(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(NEWS, size=int(rng.integers(14, 30))))


def input_reference() -> InputReference:
    """Reddit-like social posts only (and the pooled replay reference): no news reference."""
    rng = np.random.default_rng(1)
    rows = [
        ReferenceRow(social_text(rng), "reddit", str(rng.choice(LABELS_TEXT)), float(rng.uniform(0.5, 0.95)))
        for _ in range(1000)
    ]
    return InputReference.build(rows, frozenset(SOCIAL + NEWS), model_version="m/1")


def text_post(
    i: int, text: str, source: Source, rng: np.random.Generator, version: str = "m/1"
) -> ScoredPost:
    label = int(rng.integers(0, 3))
    return post(i, label, float(rng.uniform(0.5, 0.95)), version).model_copy(
        update={"text": text, "source": source, "original_length": len(text), "coins": []}
    )


def monitor_with(loader: Callable[[str], InputReference | None], **kwargs: Any) -> DriftMonitor:
    monitor = DriftMonitor(window_s=3600, min_records=200, threshold=0.25, reference_loader=loader, **kwargs)
    monitor.follow(FakeRuntime("m/1"))
    monitor.load_references(now=T0)
    return monitor


def test_input_drift_is_judged_per_source_and_the_alert_names_it() -> None:
    rng = np.random.default_rng(2)
    monitor = monitor_with(lambda version: input_reference() if version == "m/1" else None)
    like_reference = [text_post(i, social_text(rng), Source.REDDIT, rng) for i in range(400)]
    unreferenced = [text_post(1000 + i, news_text(rng), Source.NEWS, rng) for i in range(300)]
    monitor.record(like_reference + unreferenced, now=T0 + 5)
    (report,) = monitor.closed(T0 + 3600)
    verdicts = {v.source: v for v in report.sources}
    assert verdicts["reddit"].status is SourceStatus.OK
    assert {f.feature for f in verdicts["reddit"].features} >= {"length", "oov", "distance", "label"}
    assert verdicts["news"].status is SourceStatus.NO_REFERENCE  # reported, not flagged
    assert monitor.alerts(report) == []

    headlines_on_reddit = [text_post(2000 + i, news_text(rng), Source.REDDIT, rng) for i in range(400)]
    monitor.record(headlines_on_reddit, now=T0 + 3600 + 5)
    (report,) = monitor.closed(T0 + 7200)
    assert report.sources[0].status is SourceStatus.DRIFT
    alerts = {a.source_id.split(":")[1]: a for a in monitor.alerts(report)}
    assert {"length@reddit", "distance@reddit"} <= set(alerts)
    length = alerts["length@reddit"]
    assert length.source_id == "model_drift:length@reddit:m/1:2025-11-28T17:00:00+00:00"
    assert length.kind == "model_drift" and length.value is not None and length.value > 0.25
    assert "source reddit: text length drifted" in length.message and "KS D=" in length.message
    assert "over 400 posts" in length.message


def test_source_mix_is_compared_with_the_previous_window() -> None:
    rng = np.random.default_rng(3)
    monitor = monitor_with(lambda version: None)  # no input reference: the mix needs none
    monitor.record([text_post(i, social_text(rng), Source.REDDIT, rng) for i in range(300)], now=T0)
    (first,) = monitor.closed(T0 + 3600)
    assert first.source_mix is None  # nothing to compare with yet
    steady = [text_post(i, social_text(rng), Source.REDDIT, rng) for i in range(300)]
    monitor.record(steady, now=T0 + 3600)
    (second,) = monitor.closed(T0 + 7200)
    assert second.source_mix is not None and not second.source_mix.drifted  # Reddit-only is fine
    flood = [text_post(i, news_text(rng), Source.NEWS, rng) for i in range(300)]
    monitor.record(steady[:100] + flood, now=T0 + 7200)
    (third,) = monitor.closed(T0 + 10_800)
    assert third.source_mix is not None and third.source_mix.drifted
    (alert,) = monitor.alerts(third)
    assert alert.source_id.startswith("model_drift:source_mix@all:m/1:") and "source mix" in alert.message


def test_a_reference_that_cannot_be_fetched_is_retried_later() -> None:
    calls: list[str] = []

    def flaky(version: str) -> InputReference | None:
        calls.append(version)
        if len(calls) == 1:
            raise ConnectionError("registry away")
        return input_reference()

    monitor = monitor_with(flaky)  # first attempt fails: logged, nothing raised
    monitor.load_references(now=T0 + 10)  # not due yet
    assert calls == ["m/1"]
    monitor.load_references(now=T0 + RETRY_S + 1)
    assert calls == ["m/1", "m/1"]
    rng = np.random.default_rng(4)
    monitor.record([text_post(i, social_text(rng), Source.REDDIT, rng) for i in range(250)], now=T0 + 400)
    (report,) = monitor.closed(T0 + 3600)
    assert report.sources[0].status is SourceStatus.OK


def test_gauges_per_feature_and_source() -> None:
    rng = np.random.default_rng(5)
    monitor = monitor_with(lambda version: input_reference())
    monitor.record([text_post(i, news_text(rng), Source.REDDIT, rng) for i in range(300)], now=T0)
    monitor.record([text_post(i, news_text(rng), Source.NEWS, rng) for i in range(10)], now=T0)
    (report,) = monitor.closed(T0 + 3600)
    export_metrics(report)
    labels = {"model_version": "m/1", "source": "reddit", "feature": "length"}
    psi = REGISTRY.get_sample_value("cryptopulse_stream_drift_feature_psi", labels)
    p = REGISTRY.get_sample_value("cryptopulse_stream_drift_feature_p_value", labels)
    d = REGISTRY.get_sample_value("cryptopulse_stream_drift_feature_statistic", {**labels, "test": "ks"})
    assert psi is not None and psi > 0.25 and p is not None and p < 0.01 and d is not None and d > 0
    status = "cryptopulse_stream_drift_source_status"
    assert REGISTRY.get_sample_value(status, {"model_version": "m/1", "source": "reddit"}) == 1
    assert REGISTRY.get_sample_value(status, {"model_version": "m/1", "source": "news"}) == -1
