"""Data-quality monitor: shares per rule, thresholds, closed windows, alerts raised once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from core.settings import Settings
from schemas.events import Alert, DataQualityReport
from schemas.redis_keys import RedisKeys
from stream_processors.cleaning import (
    REASON_DUPLICATE_CONTENT,
    REASON_EMPTY_TEXT,
    REASON_MALFORMED_JSON,
    REASON_NON_ENGLISH,
    REASON_TOO_SHORT,
)
from stream_processors.live import LivePublisher
from stream_processors.quality import QualityMonitor

T0 = 1_764_345_600.0  # 2025-11-28 16:00:00 UTC, a 5-minute boundary


def feed(monitor: QualityMonitor, source: str, outcomes: dict[str | None, int], at: float = T0 + 10) -> None:
    for reason, n in outcomes.items():
        for _ in range(n):
            monitor.record(source, reason, now=at)


@pytest.mark.unit
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
    assert (report.source, report.records) == ("reddit", 100)
    assert report.window_start == datetime.fromtimestamp(T0, UTC) and report.judged
    assert report.shares == {
        "completeness": 0.05,
        "validity": 0.01,
        "length": 0.06,
        "language": 0.08,
        "uniqueness": 0.0,
    }
    assert report.breaches == ["language"]  # 5 % and 1 % are allowed, 8 % non-English is not
    assert report.thresholds["validity"] == 0.01
    assert report.quality_score == pytest.approx(0.80)
    assert monitor.closed(T0 + 600) == []  # each window is reported once


@pytest.mark.unit
def test_small_windows_are_reported_but_not_judged() -> None:
    monitor = QualityMonitor(window_s=300, min_records=50)
    feed(monitor, "news", {None: 5, REASON_DUPLICATE_CONTENT: 5})
    (report,) = monitor.closed(T0 + 300)
    assert report.shares["uniqueness"] == 0.5 and report.breaches == [] and not report.judged


@pytest.mark.unit
def test_sources_and_windows_are_separate() -> None:
    monitor = QualityMonitor(window_s=60, min_records=1)
    feed(monitor, "reddit", {REASON_EMPTY_TEXT: 1})
    feed(monitor, "news", {None: 1})
    feed(monitor, "reddit", {None: 1}, at=T0 + 70)
    reports = monitor.closed(T0 + 120)
    assert [(r.source, r.window_start.timestamp(), r.breaches) for r in reports] == [
        ("news", T0, []),
        ("reddit", T0, ["completeness"]),
        ("reddit", T0 + 60, []),
    ]


@pytest.mark.unit
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


@pytest.mark.integration
def test_publisher_remembers_alerts_once_and_writes_quality_reports(isolated_settings: Settings) -> None:
    import redis

    settings = isolated_settings
    monitor = QualityMonitor(window_s=300, min_records=1)
    feed(monitor, "news", {REASON_EMPTY_TEXT: 1})
    (report,) = monitor.closed(T0 + 300)
    (alert,) = monitor.alerts(report)
    publisher = LivePublisher(settings.redis.dsn, settings.redis.key_prefix)

    async def scenario() -> tuple[bool, bool, bool, bool]:
        try:
            before = await publisher.alert_raised(alert)
            first = await publisher.record_alert(alert)
            again = await publisher.record_alert(alert)
            after = await publisher.alert_raised(alert)
            assert await publisher.record_quality(report)
            assert await publisher.record_quality(report)  # a replay: same entry, not two
            return before, first, again, after
        finally:
            await publisher.close()

    assert asyncio.run(scenario()) == (False, True, False, True)
    client = redis.Redis.from_url(settings.redis.dsn)
    try:
        keys = RedisKeys(settings.redis.key_prefix)
        latest = client.lrange(keys.alerts_latest(), 0, -1)
        assert [Alert.model_validate_json(raw).source_id for raw in latest] == [alert.source_id]
        stored = DataQualityReport.model_validate_json(client.get(keys.quality_latest("news")) or b"")
        assert stored == report and client.smembers(keys.quality_sources()) == {b"news"}
        assert client.llen(keys.quality_history("news")) == 1
    finally:
        client.delete(*client.keys(f"{settings.redis.key_prefix}:*"))
        client.close()
