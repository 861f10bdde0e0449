"""Data-quality monitor: shares per rule, thresholds, closed windows, alerts raised once."""

from __future__ import annotations

import pytest

from stream_processors.cleaning import (
    REASON_DUPLICATE_CONTENT,
    REASON_EMPTY_TEXT,
    REASON_MALFORMED_JSON,
    REASON_NON_ENGLISH,
    REASON_TOO_SHORT,
)
from stream_processors.quality import QualityMonitor

T0 = 1_764_345_600.0  # 2025-11-28 16:00:00 UTC, a 5-minute boundary

pytestmark = pytest.mark.unit


def feed(monitor: QualityMonitor, source: str, outcomes: dict[str | None, int], at: float = T0 + 10) -> None:
    for reason, n in outcomes.items():
        for _ in range(n):
            monitor.record(source, reason, now=at)


def test_shares_thresholds_and_breaches() -> None:
    monitor = QualityMonitor(window_s=300, min_records=50)
    feed(
        monitor,
        "reddit",
        {
            None: 80,
            REASON_NON_ENGLISH: 8,
            REASON_TOO_SHORT: 5,
            REASON_EMPTY_TEXT: 5,
            REASON_MALFORMED_JSON: 1,
        },
    )
    monitor.record("reddit", None, ["truncated"], now=T0 + 20)  # a clean but truncated post
    assert monitor.closed(T0 + 299) == []  # still open
    (report,) = monitor.closed(T0 + 300)
    assert (report.source, report.total) == ("reddit", 100)
    assert report.shares == {
        "completeness": 0.05,
        "validity": 0.01,
        "length": 0.06,
        "language": 0.08,
        "uniqueness": 0.0,
    }
    assert report.breaches == ("language",)  # 5 % and 1 % are allowed, 8 % non-English is not
    assert report.quality_score == pytest.approx(0.80)
    assert monitor.closed(T0 + 600) == []  # each window is reported once


def test_small_windows_are_reported_but_not_judged() -> None:
    monitor = QualityMonitor(window_s=300, min_records=50)
    feed(monitor, "news", {None: 5, REASON_DUPLICATE_CONTENT: 5})
    (report,) = monitor.closed(T0 + 300)
    assert report.shares["uniqueness"] == 0.5 and report.breaches == ()


def test_sources_and_windows_are_separate() -> None:
    monitor = QualityMonitor(window_s=60, min_records=1)
    feed(monitor, "reddit", {REASON_EMPTY_TEXT: 1})
    feed(monitor, "news", {None: 1})
    feed(monitor, "reddit", {None: 1}, at=T0 + 70)
    reports = monitor.closed(T0 + 120)
    assert [(r.source, r.window_start, r.breaches) for r in reports] == [
        ("news", T0, ()),
        ("reddit", T0, ("completeness",)),
        ("reddit", T0 + 60, ()),
    ]


def test_alerts_are_keyed_by_rule_source_and_window() -> None:
    monitor = QualityMonitor(window_s=300, min_records=10)
    feed(monitor, "reddit", {None: 4, REASON_NON_ENGLISH: 6})
    (report,) = monitor.closed(T0 + 300)
    (alert,) = monitor.alerts(report)
    assert alert.kind == "data_quality" and alert.severity.value == "critical"  # 60 % failing
    assert alert.source_id == "data_quality:language:reddit:2025-11-28T16:00:00+00:00"
    assert alert.window is not None and alert.window.value == "5m"
    assert alert.value == 0.6 and alert.threshold == 0.05 and alert.coin is None
    assert "60.0% of 10 records failed the language rule" in alert.message
