"""How long the trend sink waits for an unreachable Redis, without Spark: a real redis-py
client against a loopback port nothing listens on (connection refused)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from core.settings import Settings, load_settings
from spark_jobs.metrics import SparkMetrics
from spark_jobs.stream import TrendSink
from tests.ports import free_port

pytestmark = pytest.mark.unit

RECORD = {
    "window": "1m",
    "window_start": 1_767_229_200_000,
    "source": "all",
    "coin": "bitcoin",
    "n": 1,
}


def sink_for(tmp_path: Path, retry_s: float) -> tuple[TrendSink, SparkMetrics]:
    settings: Settings = load_settings(home=tmp_path, spark={"sink_retry_s": retry_s})
    client = redis.Redis(port=free_port(), socket_connect_timeout=1)  # refused
    metrics = SparkMetrics()
    return TrendSink(settings, client=client, metrics=metrics, publish=False, trends_topic=False), metrics


def retries(metrics: SparkMetrics) -> float:
    return metrics.registry.get_sample_value("cryptopulse_spark_sink_retries_total") or 0.0


def test_unreachable_redis_is_retried_for_the_budget_then_fails_the_batch(tmp_path: Path) -> None:
    sink, metrics = sink_for(tmp_path, retry_s=5.0)
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        sink.process_retrying([RECORD], batch_id=7)
    elapsed = time.monotonic() - started
    assert 5.0 <= elapsed < 30, elapsed
    # backoff 0.5 s, 1 s, 2 s, ... (redis-py's own connect retries make each try take a while)
    assert retries(metrics) >= 1
    assert sink.store.views.pending == 0, "nothing half-queued is left for the next batch"
    assert sink.last is None


def test_no_budget_fails_at_once(tmp_path: Path) -> None:
    sink, metrics = sink_for(tmp_path, retry_s=0)
    with pytest.raises(redis.ConnectionError):
        sink.process_retrying([RECORD], batch_id=1)
    assert retries(metrics) == 0


def test_shutdown_ends_the_wait(tmp_path: Path) -> None:
    sink, _ = sink_for(tmp_path, retry_s=300)
    threading.Timer(1.0, sink.stopping.set).start()
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        sink.process_retrying([RECORD], batch_id=1)
    assert time.monotonic() - started < 15, "a stop must not wait out the retry budget"


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    sink, metrics = sink_for(tmp_path, retry_s=300)
    with pytest.raises(KeyError):
        sink.process_retrying([{"window": "1m"}], batch_id=1)  # a malformed record: a bug, not an outage
    assert retries(metrics) == 0
