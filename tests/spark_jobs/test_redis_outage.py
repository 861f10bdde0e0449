"""The streaming job outlives Redis going away: real Spark, real Kafka, a private Redis we kill.

The shared Redis on 6379 is never touched: the job writes to a ``redis-server`` this test
starts on a free port with an fsync-always AOF (a SIGKILL loses nothing it acknowledged,
like the production Redis with AOF). Three phases, one checkpoint:

1. events flow in and reach Redis;
2. Redis is killed while more events arrive: the micro-batch retries with backoff and
   completes once Redis is back, without the query stopping;
3. Redis is killed again with retries exhausted: the query stops with the batch
   uncommitted, ``wait_for_failure`` reports it (``cryptopulse spark stream`` then exits
   non-zero), and a restart from the checkpoint replays that batch.

In the end every window holds exactly what one uninterrupted run gives (computed by hand,
as in test_stream): nothing lost, nothing counted twice, although two posts are
redelivered and one micro-batch is replayed.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from core.settings import Settings, load_settings
from schemas.redis_keys import RedisKeys
from spark_jobs.metrics import SparkMetrics
from spark_jobs.stream import start_stream, wait_for_failure
from tests.ports import free_port
from tests.spark_jobs.conftest import T0, post, produce, tick
from tests.spark_jobs.test_stream import at, ts

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class PrivateRedis:
    """A throw-away redis-server on its own port and folder, which can be killed and restarted."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            [
                server,
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)),
                *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            until(lambda: _pings(probe), 15, "private redis-server answers")
        finally:
            probe.close()

    def kill(self) -> None:
        """SIGKILL: the job sees connections refused, as when a Redis host goes away."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.kill()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


WAIT_S = 240
"""Generous: a micro-batch takes seconds on an idle machine, much longer on a shared 2-core one."""


def until(condition: Callable[[], bool], timeout_s: float, what: str, query: Any | None = None) -> None:
    """Poll ``condition``; fail at the deadline, or at once when ``query`` died."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if query is not None and not query.isActive:
            raise AssertionError(f"the query stopped while waiting until {what}: {query.exception()}")
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = PrivateRedis(folder)
    server.start()
    yield server
    server.stop()


def on_private_redis(
    base: Settings, server: PrivateRedis, home: Path, prefix: str, retry_s: float
) -> Settings:
    """``base``'s topics, with its own checkpoint home, key prefix and the private Redis."""
    return load_settings(
        home=home,
        kafka=base.kafka.model_dump(),
        redis={**base.redis.model_dump(), "url": server.url, "key_prefix": prefix},
        spark={**base.spark.model_dump(), "sink_retry_s": retry_s},
    )


def retries(metrics: SparkMetrics) -> float | None:
    return metrics.registry.get_sample_value("cryptopulse_spark_sink_retries_total")


PHASE_1 = [
    post(1, T0 + timedelta(seconds=10), ["bitcoin"], 0.8, 0.9, "positive"),
    post(2, T0 + timedelta(seconds=40), ["bitcoin", "ethereum"], -0.5, 0.5, "negative", source="news"),
    tick("bitcoin", T0 + timedelta(seconds=5), 100.0),
    tick("bitcoin", T0 + timedelta(seconds=50), 105.0),
]
PHASE_2 = [
    post(3, T0 + timedelta(minutes=3, seconds=5), ["ethereum"], 0.4, 0.8, "positive"),
    post(4, T0 + timedelta(minutes=3, seconds=30), ["bitcoin"], -0.2, 0.6, "negative"),
    post(1, T0 + timedelta(seconds=10), ["bitcoin"], 0.8, 0.9, "positive"),  # redelivery
    tick("bitcoin", T0 + timedelta(minutes=3, seconds=10), 108.0),
]
PHASE_3 = [
    post(5, T0 + timedelta(minutes=6), ["bitcoin"], 0.9, 1.0, "positive"),
    post(6, T0 + timedelta(minutes=6, seconds=20), ["bitcoin", "solana"], 0.1, 0.7, "neutral"),
    post(3, T0 + timedelta(minutes=3, seconds=5), ["ethereum"], 0.4, 0.8, "positive"),  # redelivery
    tick("bitcoin", T0 + timedelta(minutes=6, seconds=30), 111.0),
]


@pytest.mark.timeout(4 * WAIT_S)
def test_redis_outage_retries_then_resumes_from_checkpoint(
    spark: Any, spark_settings: Settings, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    prefix = spark_settings.redis.key_prefix
    client = redis.Redis.from_url(private_redis.url, decode_responses=True, socket_timeout=5)
    keys = RedisKeys(f"{prefix}-run")
    patient = on_private_redis(spark_settings, private_redis, tmp_path / "run", f"{prefix}-run", WAIT_S)
    metrics = SparkMetrics()

    # 1. events reach Redis
    produce(spark_settings, PHASE_1)
    job = start_stream(spark, patient, archive=False, client=client, metrics=metrics)
    try:
        until(
            lambda: client.exists(keys.trend_ts("1m", "ethereum")) == 1,
            WAIT_S,
            "phase 1 is in Redis",
            job.trends,
        )

        # 2. Redis goes away while a batch is due: it waits, retrying, and completes afterwards
        private_redis.kill()
        produce(spark_settings, PHASE_2)
        until(
            lambda: (retries(metrics) or 0) >= 2,
            WAIT_S,
            "the batch retries against the dead Redis",
            job.trends,
        )
        failed_batch = (job.sink.last.batch_id if job.sink.last else -1) + 1
        private_redis.start()
        until(
            lambda: job.sink.last is not None and job.sink.last.batch_id >= failed_batch,
            WAIT_S,
            "the retried batch is written",
            job.trends,
        )
        assert job.trends.isActive, "a Redis outage shorter than sink_retry_s must not stop the query"
        job.process_all_available()
        assert client.exists(keys.trend_ts("1m", "ethereum")) == 1
    finally:
        job.stop()

    # 3. Redis away past the retry budget: the query stops, the batch stays uncommitted
    impatient = on_private_redis(spark_settings, private_redis, tmp_path / "run", f"{prefix}-run", 1)
    job = start_stream(spark, impatient, archive=False, client=client, metrics=SparkMetrics())
    try:
        private_redis.kill()
        produce(spark_settings, PHASE_3)
        give_up = threading.Timer(WAIT_S, lambda: None)  # wait_for_failure returns None when set
        give_up.start()
        reason = wait_for_failure(job, give_up.finished, 0.2)
        give_up.cancel()
        assert reason is not None, "the query must stop once the retries are exhausted"
        assert "stopped" in reason
        assert job.trends.exception() is not None
    finally:
        job.stop()
    private_redis.start()
    start_stream(spark, impatient, available_now=True, archive=False, client=client).await_termination()
    solana = RedisKeys(impatient.redis.key_prefix).trend_ts("1m", "solana")
    assert client.exists(solana) == 1, "the failed batch is replayed from the checkpoint"

    # Every event counted once: the redelivered posts and the replayed batch add nothing,
    # the posts of both outages are all there (what one uninterrupted run gives).
    day = T0.replace(hour=0)
    expected = {
        ("1m", "bitcoin", T0): (2, 0.15),
        ("1m", "bitcoin", T0 + timedelta(minutes=3)): (1, -0.2),
        ("1m", "bitcoin", T0 + timedelta(minutes=6)): (2, 0.5),
        ("1m", "ethereum", T0 + timedelta(minutes=3)): (1, 0.4),
        ("5m", "bitcoin", T0): (3, 0.1 / 3),
        ("5m", "bitcoin", T0 + timedelta(minutes=5)): (2, 0.5),
        ("1h", "bitcoin", T0): (5, 1.1 / 5),
        ("1h", "ethereum", T0): (2, -0.05),
        ("1h", "solana", T0): (1, 0.1),
        ("1d", "bitcoin", day): (5, 1.1 / 5),
    }
    for (window, coin, start), (volume, mean) in expected.items():
        found = at(client, impatient, window, coin, start)
        assert (found.volume, found.mean_score) == (volume, pytest.approx(mean)), (window, coin, start)
    hour = at(client, impatient, "1h", "bitcoin", T0)
    assert (hour.price_open, hour.price_high, hour.price_low, hour.price_close) == (
        100.0,
        111.0,
        100.0,
        111.0,
    )
    assert len(ts(client, impatient, "1m", "bitcoin")) == 3
    client.close()
