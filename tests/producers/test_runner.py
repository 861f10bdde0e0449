"""An item that fails, fails alone: dead-lettered (payload capped) with a reason, while the
other items, batches and feeds of the cycle are produced and their cursors committed."""

from __future__ import annotations

import functools
import random
import string
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import NewTopic

from core.kafka import EventProducer, admin_client, delete_prefixed_topics
from core.settings import Settings
from producers.base import Batch, Outgoing
from producers.runner import MultiSource, Runner
from schemas.events import DeadLetter, RedditPost
from schemas.topics import DEAD_LETTER, RAW_REDDIT
from tests.producers.conftest import RecordingProducer, read_topic


class ListSource:
    """Yields the same batches on every poll and records each batch's commit."""

    def __init__(self, name: str, *batches: list[Outgoing]) -> None:
        self.name = name
        self.interval_s = 0.01
        self.batches = batches
        self.commits: list[tuple[int, int]] = []

    def poll(self) -> Iterator[Batch]:
        for index, items in enumerate(self.batches):
            yield Batch(items, commit=functools.partial(self.commit, index))

    def commit(self, index: int, consumed: int) -> None:
        self.commits.append((index, consumed))

    def close(self) -> None:
        return None


def post(topic: str, sid: str, selftext: str = "", **fields: Any) -> Outgoing:
    data = {
        "source_id": sid,
        "event_time": "2026-01-01T00:00:00Z",
        "subreddit": "Bitcoin",
        "title": f"Bitcoin looks strong today ({sid})",
        "selftext": selftext,
    }
    return Outgoing(RedditPost, data, topic, **fields)


def noise(chars: int) -> str:
    """Text that compresses badly, so compression cannot bring a record under a size limit."""
    return "".join(random.Random(chars).choices(string.ascii_letters + " ", k=chars))


def reasons(producer: RecordingProducer) -> dict[str, str]:
    return {d["source_id"]: d["reason"] for d in producer.dead}


@pytest.mark.unit
def test_bad_items_fail_alone_and_the_batch_commits(unit_settings: Settings) -> None:
    topic = RAW_REDDIT.name(unit_settings)
    nested: dict[str, Any] = {"source_id": "t3_deep"}
    for _ in range(5_000):
        nested = {"inner": nested}
    items = [
        post(topic, "t3_a"),
        post(topic, "t3_toolong", selftext="x" * 50_000),  # over the 40k-character cap
        Outgoing(RedditPost, nested, topic),  # deeper than JSON can encode
        post(topic, "t3_nokey", key_field="no_such_field"),  # any other exception
        post(topic, "t3_huge", selftext=noise(30_000)),  # over the client's message.max.bytes
        post(topic, "t3_b"),
    ]
    producer = RecordingProducer(unit_settings, client_max_bytes=20_000)
    source = ListSource("test", items)
    stats = Runner(unit_settings, source, producer=producer).run(cycles=1)

    assert producer.ids() == ["t3_a", "t3_b"]
    [deep] = [d for d in producer.dead if d["source_id"].startswith("sha256:")]  # no readable id
    assert reasons(producer) == {
        "t3_toolong": "invalid_schema",
        deep["source_id"]: "invalid_schema",
        "t3_nokey": "unhandled_error",
        "t3_huge": "record_too_large",
    }
    assert deep["payload_size"] > 0
    nokey = next(d for d in producer.dead if d["source_id"] == "t3_nokey")
    assert nokey["detail"].startswith("AttributeError")
    assert source.commits == [(0, 6)] and stats.failed_cycles == 0 and stats.dead_lettered == 4
    assert stats.produced[topic] == 2


@pytest.mark.unit
def test_a_batch_the_broker_refuses_is_resent_record_by_record(unit_settings: Settings) -> None:
    """The broker refuses the whole batch holding an oversized record; only that record is
    dead-lettered, the others are delivered when sent again alone."""
    topic = RAW_REDDIT.name(unit_settings)
    items = [post(topic, "t3_a"), post(topic, "t3_big", selftext=noise(30_000)), post(topic, "t3_b")]
    producer = RecordingProducer(unit_settings, broker_max_bytes=20_000)
    source = ListSource("test", items)
    stats = Runner(unit_settings, source, producer=producer).run(cycles=1)

    assert sorted(producer.ids()) == ["t3_a", "t3_b"]
    assert reasons(producer) == {"t3_big": "record_too_large"}
    big = producer.dead[0]
    assert big["original_topic"] == topic and big["original_key"] == "t3_big"
    assert big["payload_size"] > 30_000 and "refused by the broker" in big["detail"]
    assert source.commits == [(0, 3)] and stats.failed_cycles == 0 and stats.produced[topic] == 2


@pytest.mark.unit
def test_an_oversized_record_never_stops_the_other_feeds(unit_settings: Settings) -> None:
    topic = RAW_REDDIT.name(unit_settings)
    first = ListSource("first", [post(topic, "t3_big", selftext=noise(30_000)), post(topic, "t3_a")])
    second = ListSource("second", [post(topic, "t3_b")], [post(topic, "t3_c")])
    producer = RecordingProducer(unit_settings, broker_max_bytes=20_000)
    stats = Runner(unit_settings, MultiSource("feeds", [first, second]), producer=producer).run(cycles=1)

    assert sorted(producer.ids()) == ["t3_a", "t3_b", "t3_c"]
    assert reasons(producer) == {"t3_big": "record_too_large"}
    assert first.commits == [(0, 2)] and second.commits == [(0, 1), (1, 1)]
    assert stats.failed_cycles == 0


@pytest.mark.unit
def test_other_delivery_failures_still_fail_the_cycle(unit_settings: Settings) -> None:
    """A broker that is away is not the record's fault: nothing is dead-lettered or committed."""
    topic = RAW_REDDIT.name(unit_settings)
    source = ListSource("test", [post(topic, "t3_a")])
    producer = RecordingProducer(unit_settings, fail_flush=True)
    stats = Runner(unit_settings, source, producer=producer).run(cycles=1)
    assert stats.failed_cycles == 1 and source.commits == [] and producer.dead == []


@pytest.mark.integration
def test_the_real_broker_refuses_one_record_and_the_rest_is_delivered(kafka_settings: Settings) -> None:
    """A topic whose max.message.bytes is 4 KB: the record over it is dead-lettered, the
    records batched with it arrive, and the cursor moves past all of them."""
    settings = kafka_settings
    topic = f"{settings.kafka.topic_prefix}.raw.small"
    admin = admin_client(settings)
    for future in admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, config={"max.message.bytes": "4096"})]
    ).values():
        future.result(timeout=30)
    try:
        items = [post(topic, f"t3_s{i}") for i in range(5)]
        items.insert(2, post(topic, "t3_big", selftext=noise(30_000)))
        source = ListSource("test", items)
        producer = EventProducer(settings, component="producer.test")
        stats = Runner(settings, source, producer=producer).run(cycles=1)

        delivered = [RedditPost.from_json(v).source_id for _, v in read_topic(settings, topic)]
        assert delivered == [f"t3_s{i}" for i in range(5)]
        dead = [DeadLetter.from_json(v) for _, v in read_topic(settings, DEAD_LETTER.name(settings))]
        assert [(d.source_id, d.reason, d.component) for d in dead] == [
            ("t3_big", "record_too_large", "producer.test")
        ]
        assert dead[0].payload_size is not None and dead[0].payload_size > 30_000
        assert source.commits == [(0, 6)] and stats.failed_cycles == 0
    finally:
        delete_prefixed_topics(settings)
