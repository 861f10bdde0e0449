"""Volume-spike alerts (the rule, raised once to Kafka and Redis) and the trends topic."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from core.settings import Settings, SparkSettings
from schemas.events import Alert, TrendWindow, WindowSize
from schemas.redis_keys import RedisKeys
from schemas.topics import ALERTS, TRENDS
from spark_jobs.alerts import sentiment_shift_alerts, trend_alerts, volume_spike_alerts
from tests.spark_jobs.windows import trend_row, window


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


@pytest.mark.unit
def test_sentiment_shift_rule_needs_zscore_change_and_volume():
    cfg = SparkSettings(
        alert_sentiment_zscore=3.0, alert_min_shift=0.2, alert_min_volume=5, alert_windows=["5m", "1h"]
    )
    alerts = sentiment_shift_alerts(
        [
            window("bitcoin", z=None, score=-0.45, score_z=-3.5, change=-0.6),
            window("ethereum", z=None, score=0.7, score_z=6.5, change=0.5),
            window("solana", z=None, score_z=8.0, change=0.05),  # calm series: big z, tiny move
            window("cardano", z=None, score_z=2.0, change=0.5),  # big move, inside its usual range
            window("dogecoin", z=None, volume=4, score_z=9.0, change=0.9),  # too few mentions
            window("ripple", z=None, source="news", score_z=9.0, change=0.9),  # per-source window
            window("tron", z=None, score_z=None, change=None),  # no history yet
        ],
        cfg,
    )
    assert [(a.coin, a.severity.value) for a in alerts] == [("bitcoin", "warning"), ("ethereum", "critical")]
    fell, rose = alerts
    assert fell.kind == "sentiment_shift" and fell.value == -3.5 and fell.threshold == 3.0
    assert fell.source_id == "sentiment_shift:bitcoin:5m:2024-05-01T12:00:00+00:00"
    assert "fell to -0.45" in fell.message and "rose to +0.70" in rose.message
    both = trend_alerts([window("bitcoin", z=4.0, score_z=-3.5, change=-0.6)], cfg)
    assert [a.kind for a in both] == ["sentiment_shift", "volume_spike"]
    assert len({a.source_id for a in both}) == 2  # one window can raise both, each once


@pytest.mark.integration
def test_sink_raises_each_alert_once_to_kafka_and_redis(spark_settings: Settings, redis_client: Any):
    from confluent_kafka import Consumer, TopicPartition

    from spark_jobs.stream import TrendSink

    sink = TrendSink(spark_settings, client=redis_client, publish=False)
    frame = pd.DataFrame(
        [
            trend_row(window("bitcoin", z=5.0)),
            trend_row(window("solana", z=0.5)),
            trend_row(window("cardano", z=0.1, score=-0.5, score_z=-4.0, change=-0.7)),
        ]
    )
    assert sink.raise_alerts(frame) == 2
    assert sink.raise_alerts(frame) == 0  # the next micro-batch updating the same window
    stored = redis_client.lrange(RedisKeys(spark_settings.redis.key_prefix).alerts_latest(), 0, -1)
    raised = sorted((a.coin, a.kind) for a in map(Alert.model_validate_json, stored))
    assert raised == [("bitcoin", "volume_spike"), ("cardano", "sentiment_shift")]

    topic = ALERTS.name(spark_settings)
    consumer = Consumer({"bootstrap.servers": spark_settings.kafka.bootstrap, "group.id": "alerts-test"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert high - low == 2
        consumer.assign([TopicPartition(topic, 0, low)])
        messages = []
        for _ in range(40):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                messages.append((msg.key(), json.loads(msg.value() or b"{}")["kind"]))
            if len(messages) == 2:
                break
        assert sorted(messages) == [(b"bitcoin", "volume_spike"), (b"cardano", "sentiment_shift")]
    finally:
        consumer.close()


@pytest.mark.integration
def test_sink_publishes_trend_windows_keyed_by_series(spark_settings: Settings, redis_client: Any):
    """Kafka subscribers get every updated window on the trends topic, one series per key."""
    from confluent_kafka import Consumer, TopicPartition

    from spark_jobs.stream import TrendSink

    sink = TrendSink(spark_settings, client=redis_client, publish=False)
    first = [window("bitcoin", volume=3, z=None), window("ethereum", source="reddit", volume=2, z=None)]
    assert sink.publish_trends(pd.DataFrame([trend_row(w) for w in first])) == 2
    assert sink.publish_trends(pd.DataFrame([trend_row(window("bitcoin", volume=4, z=1.0))])) == 1

    topic = TRENDS.name(spark_settings)
    consumer = Consumer(
        {
            "bootstrap.servers": spark_settings.kafka.bootstrap,
            "group.id": "trends-test",
            "enable.auto.commit": False,
        }
    )
    received: list[tuple[int | None, bytes | None, TrendWindow]] = []
    try:
        partitions = TRENDS.partition_count(spark_settings)
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                window_json = msg.value() or b""
                received.append((msg.partition(), msg.key(), TrendWindow.model_validate_json(window_json)))
            if len(received) == 3:
                break
    finally:
        consumer.close()
    assert sorted((key, w.volume) for _, key, w in received) == [
        (b"bitcoin:5m:all", 3),
        (b"bitcoin:5m:all", 4),
        (b"ethereum:5m:reddit", 2),
    ]
    bitcoin = [(p, w.volume) for p, key, w in received if key == b"bitcoin:5m:all"]
    assert len({p for p, _ in bitcoin}) == 1 and [v for _, v in bitcoin] == [3, 4]  # one partition, in order

    quiet = TrendSink(spark_settings, client=redis_client, publish=False, trends_topic=False)
    assert quiet.publish_trends(pd.DataFrame([trend_row(first[0])])) == 0
