"""Alert -> signed webhook latency and burst throughput on the running local platform.

``.venv/bin/python -m tests.alerting.bench_delivery`` (about 30 s): an isolated topic and key
prefix (deleted afterwards), the alerting service in this process, one subscriber on a local
HTTP receiver. Not a test (no pass/fail): the figures in docs/alerts.md come from it.
"""

from __future__ import annotations

import statistics
import time
import uuid

from fastapi.testclient import TestClient

from api.main import create_app
from core.kafka import EventProducer, ensure_topics
from core.settings import get_settings, load_settings
from schemas.topics import ALERTS, CATALOG
from tests.alerting.test_service import Receiver, Running, _alert, _wait
from tests.api.conftest import FakeRuntime
from tests.cleanup import discard_run_data

ALERTS_PER_RUN = 100


def main() -> None:
    base = get_settings()
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        kafka={**base.kafka.model_dump(), "topic_prefix": f"bench-{tag}"},
        redis={**base.redis.model_dump(), "key_prefix": f"bench-{tag}"},
    )
    ensure_topics(settings, CATALOG)
    topic = ALERTS.name(settings)
    try:
        with (
            Receiver([200]) as hook,
            Running(settings),
            TestClient(create_app(settings, runtime=FakeRuntime())) as api,
            EventProducer(settings, component="bench") as producer,
        ):
            api.post("/v1/alerts/subscriptions", json={"url": hook.url}).raise_for_status()
            latencies: list[float] = []
            for i in range(ALERTS_PER_RUN):
                alert = _alert(tag=f"one-{i}")
                sent = time.monotonic()
                producer.send(topic, alert, key=ALERTS.key_of(alert))
                producer.flush()
                _wait(lambda: len(hook.requests) > len(latencies), 30, "the webhook")
                latencies.append((time.monotonic() - sent) * 1000)
            latencies.sort()
            print(
                f"{ALERTS_PER_RUN} alerts one at a time (send + flush -> signed webhook received): "
                f"p50 {statistics.median(latencies):.1f} ms, "
                f"p95 {latencies[int(0.95 * ALERTS_PER_RUN) - 1]:.1f} ms, max {latencies[-1]:.1f} ms"
            )
            started = time.monotonic()
            for i in range(ALERTS_PER_RUN):
                alert = _alert(tag=f"burst-{i}")
                producer.send(topic, alert, key=ALERTS.key_of(alert))
            producer.flush()
            _wait(lambda: len(hook.requests) >= 2 * ALERTS_PER_RUN, 300, "the burst")
            print(f"burst of {ALERTS_PER_RUN} alerts: all delivered in {time.monotonic() - started:.2f} s")
    finally:
        discard_run_data(settings)


if __name__ == "__main__":
    main()
