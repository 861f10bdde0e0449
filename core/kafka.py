"""Kafka client helpers shared by producers, processors, the CLI and tests.

One place decides how CryptoPulse talks to Kafka: idempotent producers with
``acks=all`` and compression, every delivery report checked, topics created from
specs, and an AdminClient readiness probe (never a fixed sleep).

This is the ground floor: it knows topics and records only by the small protocols
below (the catalog in :mod:`schemas.topics` and the wire models satisfy them), so it
never imports the schemas built on top of it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from core.settings import Settings

log = logging.getLogger(__name__)


class WireRecord(Protocol):
    """A record we send: serialises itself and names its default key."""

    @property
    def source_id(self) -> str: ...

    def to_json(self) -> bytes: ...


class TopicSpec(Protocol):
    """A catalog topic as the Kafka helpers see it (see :class:`schemas.topics.TopicSpec`)."""

    def name(self, settings: Settings) -> str: ...

    def partition_count(self, settings: Settings) -> int: ...

    def config(self) -> dict[str, str]: ...

    def decode(self, payload: bytes | str) -> Any: ...


@dataclass(frozen=True)
class FailedDelivery:
    """One record the broker did not acknowledge, with what it takes to resend or dead-letter it."""

    topic: str
    key: bytes | None
    value: bytes
    error: KafkaError

    @property
    def too_large(self) -> bool:
        """Refused for its size (the broker rejects a whole batch that is over its limit)."""
        return bool(self.error.code() == KafkaError.MSG_SIZE_TOO_LARGE)


class DeliveryError(RuntimeError):
    """A record was not acknowledged by the broker; ``failures`` says which, and why."""

    def __init__(self, message: str, failures: Iterable[FailedDelivery] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


def admin_client(settings: Settings, *, timeout_s: float = 10.0, quiet: bool = False) -> AdminClient:
    """An AdminClient; ``quiet`` silences librdkafka's connection-refused noise while probing."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka.bootstrap,
        "socket.timeout.ms": int(timeout_s * 1000),
        "request.timeout.ms": int(timeout_s * 1000),
    }
    if quiet:
        config["log_level"] = 0
    return AdminClient(config)


def broker_ready(settings: Settings, *, timeout_s: float = 3.0) -> bool:
    """True when the broker answers a metadata request through the AdminClient."""
    try:
        metadata = admin_client(settings, timeout_s=timeout_s, quiet=True).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def wait_for_broker(settings: Settings, *, timeout_s: float | None = None) -> None:
    """Poll the AdminClient until the broker answers or the deadline passes."""
    deadline = time.monotonic() + (timeout_s or settings.kafka.ready_timeout_s)
    while time.monotonic() < deadline:
        if broker_ready(settings, timeout_s=2.0):
            return
        time.sleep(0.5)
    raise TimeoutError(f"Kafka at {settings.kafka.bootstrap} not ready after {timeout_s}s")


def viewer_consumer(settings: Settings, purpose: str, *, timeout_s: float = 5.0) -> Consumer:
    """A read-only consumer: its own throw-away group, no offset commits, partitions assigned
    explicitly, so looking at a topic never moves anyone's position."""
    return Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"cryptopulse-{purpose}-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "socket.timeout.ms": int(timeout_s * 1000),
            "log_level": 0,
        }
    )


def tail_offsets(
    consumer: Consumer, topic: str, partitions: Iterable[int], last: int | None, *, timeout_s: float = 5.0
) -> list[tuple[TopicPartition, int]]:
    """Per partition, where to start reading to get its last ``last`` records (every record
    when ``last`` is None), with the partition's end offset."""
    tails = []
    for pid in sorted(partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, pid), timeout=timeout_s)
        start = low if last is None else max(low, high - max(0, last))
        tails.append((TopicPartition(topic, pid, start), high))
    return tails


def decode_key(key: object) -> str | None:
    """A record key as text (keys are UTF-8 ids here; undecodable bytes are replaced)."""
    if key is None:
        return None
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)


@dataclass(frozen=True)
class Received:
    """One record read by :func:`follow_topic`: the decoded event, or why it could not be."""

    partition: int
    offset: int
    key: str | None
    event: Any
    error: str | None


def follow_topic(
    settings: Settings,
    spec: TopicSpec,
    *,
    start: str = "end",
    last: int = 0,
    stop: Callable[[], bool] = lambda: False,
    timeout_s: float = 5.0,
) -> Iterator[Received]:
    """Records of a catalog topic as they arrive, decoded with the topic's schemas.

    ``start``: ``"end"`` (only new records; with ``last`` > 0 also the last ``last`` of
    each partition) or ``"beginning"``. A record that fails its schema is yielded with
    ``error`` set, never raised. Stops when ``stop()`` is true (checked every poll).
    """
    name = spec.name(settings)
    metadata = admin_client(settings, timeout_s=timeout_s, quiet=True).list_topics(timeout=timeout_s)
    if name not in metadata.topics:
        raise LookupError(f"topic {name} does not exist on {settings.kafka.bootstrap}")
    consumer = viewer_consumer(settings, "subscribe", timeout_s=timeout_s)
    try:
        partitions = metadata.topics[name].partitions
        from_last = None if start == "beginning" else last
        consumer.assign(
            [tp for tp, _ in tail_offsets(consumer, name, partitions, from_last, timeout_s=timeout_s)]
        )
        while not stop():
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                log.warning("kafka error while following %s: %s", name, msg.error())
                continue
            key = decode_key(msg.key())
            try:
                event, error = spec.decode(msg.value() or b""), None
            except ValueError as exc:
                event, error = None, str(exc)
            yield Received(msg.partition() or 0, msg.offset() or 0, key, event, error)
    finally:
        consumer.close()


def topic_watermarks(
    settings: Settings, wanted: Callable[[str], bool] = lambda name: True, *, timeout_s: float = 5.0
) -> dict[str, list[tuple[int, int, int]]]:
    """``(partition, low, high)`` offsets of every wanted topic on the broker.

    Used by ``cryptopulse topics`` and the API's Kafka view; raises ``KafkaException``
    when the broker does not answer, rather than reporting made-up counts.
    """
    metadata = admin_client(settings, timeout_s=timeout_s, quiet=True).list_topics(timeout=timeout_s)
    consumer = viewer_consumer(settings, "inspect", timeout_s=timeout_s)
    try:
        return {
            name: [
                (pid, *consumer.get_watermark_offsets(TopicPartition(name, pid), timeout=timeout_s))
                for pid in sorted(topic.partitions)
            ]
            for name, topic in sorted(metadata.topics.items())
            if wanted(name)
        }
    finally:
        consumer.close()


@dataclass(frozen=True)
class TopicState:
    name: str
    created: bool
    partitions: int


def delete_prefixed_topics(settings: Settings) -> list[str]:
    """Delete every topic under ``settings.kafka.topic_prefix`` (catalog and faust's own).

    For throw-away prefixes (tests, benchmarks), so repeated runs do not pile up
    partitions in the broker. Returns the names deleted.
    """
    admin = admin_client(settings)
    prefix = settings.kafka.topic_prefix + "."
    names = [name for name in admin.list_topics(timeout=10).topics if name.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result(timeout=60)
    return names


def ensure_topics(
    settings: Settings, specs: Iterable[TopicSpec], *, timeout_s: float = 30.0
) -> list[TopicState]:
    """Create missing topics (usually ``schemas.topics.CATALOG``); existing ones are left
    as they are (idempotent)."""
    admin = admin_client(settings)
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = list(specs)
    missing = [
        NewTopic(
            spec.name(settings),
            num_partitions=spec.partition_count(settings),
            replication_factor=min(settings.kafka.replication_factor, 32767),
            config=spec.config(),
        )
        for spec in wanted
        if spec.name(settings) not in existing
    ]
    created: set[str] = set()
    if missing:
        for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
                created.add(name)
                log.info("topic created: %s", name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    metadata = admin.list_topics(timeout=timeout_s).topics
    return [
        TopicState(
            spec.name(settings),
            spec.name(settings) in created,
            len(metadata[spec.name(settings)].partitions) if spec.name(settings) in metadata else 0,
        )
        for spec in wanted
    ]


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Idempotent, durable, compressed: the only producer configuration we use."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": settings.kafka.compression_type,
        "linger.ms": 20,
        "max.in.flight.requests.per.connection": 5,
        "message.timeout.ms": 120_000,
        "retries": 2_147_483_647,
    }
    config.update(overrides)
    return config


class EventProducer:
    """Send schema models to topics and fail loudly on any undelivered record.

    ``send`` is asynchronous; ``flush`` waits for every delivery report and raises
    :class:`DeliveryError` if any record was not acknowledged, so callers only
    advance cursors after a successful flush.
    """

    def __init__(self, settings: Settings, *, component: str, **overrides: Any) -> None:
        self.settings = settings
        self.component = component
        self._producer = Producer(producer_config(settings, **overrides))
        self._failures: list[FailedDelivery] = []
        self.delivered = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(FailedDelivery(str(msg.topic()), msg.key(), msg.value() or b"", err))
            log.error("delivery failed", extra={"topic": msg.topic(), "error": str(err)})
        else:
            self.delivered += 1

    def send(self, topic: str, record: WireRecord, *, key: str | None = None) -> None:
        self.send_raw(topic, record.to_json(), key=key or record.source_id)

    def send_raw(self, topic: str, value: bytes, *, key: str | None = None) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key.encode() if key else None, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise DeliveryError(f"{remaining} records still in flight after {timeout_s}s")
        if self._failures:
            failures, self._failures = self._failures, []
            summary = [f"{f.topic}: {f.error}" for f in failures[:3]]
            raise DeliveryError(f"{len(failures)} records not delivered: {summary}", failures)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
