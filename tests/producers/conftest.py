"""Fixtures for producer tests: a scripted HTTP server, settings, a recording producer, Kafka reads."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from core.kafka import DeliveryError, EventProducer, FailedDelivery, WireRecord, ensure_topics
from core.settings import Settings, load_settings
from schemas.events import Event
from schemas.topics import DEAD_LETTER, RAW_NEWS, RAW_PRICES, RAW_REDDIT
from tests.producers.fakeserver import FakeServer

RAW_SPECS = [RAW_REDDIT, RAW_NEWS, RAW_PRICES, DEAD_LETTER]


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer().start()
    yield srv
    srv.stop()


def producer_overrides(server: FakeServer, **extra: Any) -> dict[str, Any]:
    """Point every connector at the local server, with test-sized timeouts and backoff."""
    return {
        "reddit_auth_url": f"{server.url}/api/v1/access_token",
        "reddit_api_base": server.url,
        "reddit_public_base": server.url,
        "subreddits": ["Bitcoin"],
        "coingecko_base_url": f"{server.url}/api/v3",
        "coins": ["bitcoin", "ethereum"],
        "newsapi_url": f"{server.url}/v2/everything",
        "http_timeout_s": 1.0,
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.5,
        "metrics_port": 9101,
        **extra,
    }


def make_settings(
    home: Path, server: FakeServer, *, kafka: dict[str, Any] | None = None, **extra: Any
) -> Settings:
    return load_settings(home=home, kafka=kafka or {}, producer=producer_overrides(server, **extra))


@pytest.fixture
def unit_settings(tmp_path: Path, server: FakeServer) -> Settings:
    return make_settings(tmp_path, server)


class RecordingProducer(EventProducer):
    """An EventProducer stand-in that keeps records in memory (unit tests, no broker).

    ``client_max_bytes``: ``send`` refuses a larger record at once, as librdkafka does over
    its message.max.bytes. ``broker_max_bytes``: ``flush`` fails every pending record of a
    topic that holds a larger one, as a broker refuses a whole batch over its limit.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        fail_flush: bool = False,
        client_max_bytes: int | None = None,
        broker_max_bytes: int | None = None,
    ) -> None:
        self.settings = settings
        self.component = "test"
        self.sent: list[tuple[str, str | None, Event]] = []
        self.pending: list[tuple[str, str | None, Event]] = []
        self.dead: list[dict[str, Any]] = []
        self.fail_flush = fail_flush
        self.client_max_bytes = client_max_bytes
        self.broker_max_bytes = broker_max_bytes
        self.flushes = 0
        self._by_value: dict[bytes, Event] = {}
        self.delivered = 0

    def send(self, topic: str, record: WireRecord, *, key: str | None = None) -> None:
        assert isinstance(record, Event)
        if topic == DEAD_LETTER.name(self.settings):
            self.dead.append(record.model_dump())
            return
        value = record.to_json()
        if self.client_max_bytes is not None and len(value) > self.client_max_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self._by_value[value] = record
        self.pending.append((topic, key, record))

    def send_raw(self, topic: str, value: bytes, *, key: str | None = None) -> None:
        self.pending.append((topic, key, self._by_value[value]))

    def flush(self, timeout_s: float = 60.0) -> None:
        self.flushes += 1
        if self.fail_flush and self.pending:
            self.pending.clear()
            raise DeliveryError("simulated broker failure")
        limit = self.broker_max_bytes
        refused_topics = {t for t, _, r in self.pending if limit is not None and len(r.to_json()) > limit}
        failures = [
            FailedDelivery(
                t, k.encode() if k else None, r.to_json(), KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
            )
            for t, k, r in self.pending
            if t in refused_topics
        ]
        self.sent.extend((t, k, r) for t, k, r in self.pending if t not in refused_topics)
        self.pending.clear()
        if failures:
            raise DeliveryError(f"{len(failures)} records not delivered", failures)

    def close(self) -> None:
        self.flush()

    def ids(self, topic_suffix: str = "") -> list[str]:
        return [r.source_id for t, _, r in self.sent if t.endswith(topic_suffix)]


@pytest.fixture
def recorder(unit_settings: Settings) -> RecordingProducer:
    return RecordingProducer(unit_settings)


# -- real Kafka --------------------------------------------------------------------------


@pytest.fixture
def kafka_settings(platform: Settings, tmp_path: Path, server: FakeServer) -> Settings:
    """Unique topic prefix and state home per test; raw and dead-letter topics created."""
    settings = make_settings(
        tmp_path,
        server,
        kafka={**platform.kafka.model_dump(), "topic_prefix": f"tp-{uuid.uuid4().hex[:10]}"},
    )
    ensure_topics(settings, RAW_SPECS)
    return settings


def read_topic(settings: Settings, topic: str, *, timeout_s: float = 20.0) -> list[tuple[str | None, bytes]]:
    """Every record now in ``topic`` (up to the high watermarks), as (key, value), in offset order."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        wanted = sum(ends.values())
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[tuple[int, int, str | None, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < wanted and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            key = msg.key()
            out.append(
                (msg.partition() or 0, msg.offset() or 0, key.decode() if key else None, msg.value() or b"")
            )
        assert len(out) == wanted, f"read {len(out)} of {wanted} records from {topic}"
        return [(k, v) for _, _, k, v in sorted(out, key=lambda r: (r[0], r[1]))]
    finally:
        consumer.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every producer test not marked ``integration`` is a ``unit`` test (no services needed)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.unit)
