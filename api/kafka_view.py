"""Read-only Kafka view for the dashboard's Topics page (the local Kafka UI).

This is the only place the API talks to Kafka, and only under /v1/admin (behind
auth). Calls are blocking librdkafka calls, so routes run them in the threadpool.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition

from api.models import (
    ConsumerGroupInfo,
    ConsumerGroupsResponse,
    GroupPartitionLag,
    PartitionInfo,
    TopicInfo,
    TopicMessage,
    TopicMessagesResponse,
    TopicsResponse,
)
from core.kafka import admin_client, decode_key, tail_offsets, topic_watermarks, viewer_consumer
from core.settings import Settings


class KafkaUnavailable(RuntimeError):
    """The broker did not answer in time."""


class UnknownTopic(LookupError):
    """No such topic under this deployment's prefix."""


def _consumer(settings: Settings, timeout_s: float) -> Consumer:
    return viewer_consumer(settings, "api-view", timeout_s=timeout_s)


def _owned(settings: Settings, name: str) -> bool:
    return name.startswith(settings.kafka.topic_prefix + ".")


def _metadata(settings: Settings, timeout_s: float) -> Any:
    try:
        return admin_client(settings, timeout_s=timeout_s, quiet=True).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailable(f"Kafka at {settings.kafka.bootstrap} did not answer: {exc}") from exc


def list_topics(settings: Settings, timeout_s: float = 5.0) -> TopicsResponse:
    """Topics under ``kafka.topic_prefix`` with per-partition watermarks."""
    try:
        watermarks = topic_watermarks(settings, lambda name: _owned(settings, name), timeout_s=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailable(f"Kafka at {settings.kafka.bootstrap} did not answer: {exc}") from exc
    topics = []
    for name, offsets in watermarks.items():
        detail = [
            PartitionInfo(partition=pid, low=low, high=high, messages=max(0, high - low))
            for pid, low, high in offsets
        ]
        topics.append(
            TopicInfo(
                name=name, partitions=len(detail), messages=sum(p.messages for p in detail), detail=detail
            )
        )
    return TopicsResponse(count=len(topics), topics=topics)


def consumer_groups(settings: Settings, timeout_s: float = 5.0) -> ConsumerGroupsResponse:
    """Consumer groups with committed offsets and lag on this deployment's topics."""
    admin = admin_client(settings, timeout_s=timeout_s, quiet=True)
    try:
        listing = admin.list_consumer_groups(request_timeout=timeout_s).result()
    except KafkaException as exc:
        raise KafkaUnavailable(str(exc)) from exc
    consumer = _consumer(settings, timeout_s)
    groups = []
    try:
        for g in sorted(listing.valid, key=lambda g: g.group_id):
            if g.group_id.startswith("cryptopulse-api-view-"):
                continue
            futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g.group_id)])
            offsets = next(iter(futures.values())).result()
            parts = []
            for tp in offsets.topic_partitions or []:
                if not _owned(settings, tp.topic):
                    continue
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=timeout_s
                )
                committed = tp.offset if tp.offset >= 0 else None
                parts.append(
                    GroupPartitionLag(
                        topic=tp.topic,
                        partition=tp.partition,
                        committed=committed,
                        high=high,
                        lag=max(0, high - (committed or 0)),
                    )
                )
            if not parts:
                continue
            state = getattr(g.state, "name", str(g.state)).lower()
            groups.append(
                ConsumerGroupInfo(
                    group=g.group_id, state=state, lag=sum(p.lag for p in parts), partitions=parts
                )
            )
    except KafkaException as exc:
        raise KafkaUnavailable(str(exc)) from exc
    finally:
        consumer.close()
    return ConsumerGroupsResponse(count=len(groups), groups=groups)


def latest_messages(
    settings: Settings, topic: str, limit: int, timeout_s: float = 5.0
) -> TopicMessagesResponse:
    """The newest ``limit`` messages of a topic across its partitions, newest first."""
    if not _owned(settings, topic):
        raise UnknownTopic(topic)
    metadata = _metadata(settings, timeout_s)
    if topic not in metadata.topics:
        raise UnknownTopic(topic)
    consumer = _consumer(settings, timeout_s)
    messages: list[TopicMessage] = []
    try:
        tails = tail_offsets(consumer, topic, metadata.topics[topic].partitions, limit, timeout_s=timeout_s)
        assignments = [tp for tp, high in tails if high > tp.offset]
        remaining = sum(high - tp.offset for tp, high in tails)
        if assignments:
            consumer.assign(assignments)
            deadline = datetime.now(UTC).timestamp() + timeout_s
            while remaining > 0 and datetime.now(UTC).timestamp() < deadline:
                for msg in consumer.consume(num_messages=min(500, remaining), timeout=0.5):
                    if msg.error():
                        continue
                    remaining -= 1
                    ts_type, ts = msg.timestamp()
                    value = msg.value() or b""
                    messages.append(
                        TopicMessage(
                            partition=msg.partition() or 0,
                            offset=msg.offset() or 0,
                            timestamp=datetime.fromtimestamp(ts / 1000, UTC) if ts_type and ts > 0 else None,
                            key=decode_key(msg.key()),
                            value=value.decode("utf-8", "replace")[:4000]
                            if isinstance(value, bytes)
                            else str(value),
                        )
                    )
    except KafkaException as exc:
        raise KafkaUnavailable(str(exc)) from exc
    finally:
        consumer.close()
    messages.sort(key=lambda m: (m.timestamp or datetime.min.replace(tzinfo=UTC), m.offset), reverse=True)
    messages = messages[:limit]
    return TopicMessagesResponse(topic=topic, count=len(messages), messages=messages)
