"""Volume-spike alerts: the rule, and raising each one once to Kafka and Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from cryptopulse.kafka import ensure_topics
from cryptopulse.settings import Settings, SparkSettings
from schemas.events import Alert, TrendWindow, WindowSize
from schemas.redis_keys import RedisKeys
from schemas.topics import ALERTS
from spark_jobs.alerts import volume_spike_alerts

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def window(
    coin: str = "bitcoin", *, size: str = "5m", source: str = "all", volume: int = 40, z: float | None = 4.0
):
    start = T0
    return TrendWindow(
        source_id=TrendWindow.make_source_id(coin, size, source, start),
        event_time=start + timedelta(minutes=1),
        ingest_time=start + timedelta(minutes=1),
        coin=coin,
        window=WindowSize(size),
        source=source,  # type: ignore[arg-type]
        window_start=start,
        window_end=start + timedelta(minutes=5),
        volume=volume,
        mean_score=0.2,
        weighted_score=0.25,
        positive_share=0.5,
        neutral_share=0.3,
        negative_share=0.2,
        social_dominance=0.6,
        volume_zscore=z,
    )


def _row(trend: TrendWindow) -> dict[str, Any]:
    """A trend-frame row as the streaming job holds it: times in epoch milliseconds."""
    row = trend.model_dump()
    for name in ("event_time", "ingest_time", "window_start", "window_end"):
        row[name] = int(row[name].timestamp() * 1000)
    row["window"] = trend.window.value
    return row


@pytest.mark.unit
def test_rule_thresholds_filters_and_severity():
    cfg = SparkSettings(alert_zscore=3.0, alert_min_volume=5, alert_windows=["5m", "1h"])
    alerts = volume_spike_alerts(
        [
            window("bitcoin", z=4.0),
            window("ethereum", z=7.0),
            window("solana", z=2.9),  # below threshold
            window("cardano", z=None),  # no history yet
            window("dogecoin", volume=4, z=9.0),  # too few mentions
            window("ripple", source="reddit", z=9.0),  # per-source windows do not alert
            window("tron", size="1m", z=9.0),  # size not configured
        ],
        cfg,
    )
    assert [(a.coin, a.severity.value) for a in alerts] == [("bitcoin", "warning"), ("ethereum", "critical")]
    first = alerts[0]
    assert first.kind == "volume_spike" and first.window == WindowSize.FIVE_MINUTES
    assert first.value == 4.0 and first.threshold == 3.0
    assert first.source_id == "volume_spike:bitcoin:5m:2024-05-01T12:00:00+00:00"
    assert "40 mentions" in first.message
    assert volume_spike_alerts([window("bitcoin", z=4.0)], cfg)[0].source_id == first.source_id


@pytest.mark.integration
def test_sink_raises_each_alert_once_to_kafka_and_redis(spark_settings: Settings, redis_client: Any):
    from confluent_kafka import Consumer, TopicPartition

    from spark_jobs.stream import TrendSink

    ensure_topics(spark_settings, [ALERTS])
    sink = TrendSink(spark_settings, client=redis_client, publish=False)
    frame = pd.DataFrame([_row(window("bitcoin", z=5.0)), _row(window("solana", z=0.5))])
    assert sink.raise_alerts(frame) == 1
    assert sink.raise_alerts(frame) == 0  # the next micro-batch updating the same window
    stored = redis_client.lrange(RedisKeys(spark_settings.redis.key_prefix).alerts_latest(), 0, -1)
    assert [Alert.model_validate_json(raw).coin for raw in stored] == ["bitcoin"]

    topic = ALERTS.name(spark_settings)
    consumer = Consumer({"bootstrap.servers": spark_settings.kafka.bootstrap, "group.id": "alerts-test"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert high - low == 1
        consumer.assign([TopicPartition(topic, 0, low)])
        msg = None
        for _ in range(40):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                break
        assert msg is not None and msg.key() == b"bitcoin"
        assert json.loads(msg.value())["kind"] == "volume_spike"
    finally:
        consumer.close()
