"""Produce and consume through the real broker with the project's schemas."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer

from core.kafka import EventProducer, ensure_topics, wait_for_broker
from core.settings import Settings, load_settings
from cryptopulse.platform.manager import Platform
from cryptopulse.platform.services import KafkaService
from schemas.events import PriceTick
from schemas.topics import CATALOG, RAW_PRICES
from tests.ports import free_port

pytestmark = pytest.mark.integration

COINS = ["bitcoin", "ethereum", "solana", "cardano", "dogecoin"]


def _ticks(n: int, start: datetime) -> list[PriceTick]:
    ticks = []
    for i in range(n):
        coin = COINS[i % len(COINS)]
        at = start + timedelta(seconds=i)
        ticks.append(
            PriceTick(source_id=PriceTick.make_source_id(coin, at), event_time=at, coin=coin, price=100.0 + i)
        )
    return ticks


def _consume(settings: Settings, topic: str, group: str, expected: int, timeout_s: float = 60.0) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            messages.append(msg)
            consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()
    return messages


def test_keyed_roundtrip_in_consumer_group(isolated_settings: Settings):
    topic = RAW_PRICES.name(isolated_settings)
    ticks = _ticks(50, datetime(2024, 1, 1, tzinfo=UTC))
    with EventProducer(isolated_settings, component="test") as producer:
        for tick in ticks:
            producer.send(topic, tick, key=tick.coin)
    messages = _consume(isolated_settings, topic, "roundtrip", len(ticks))
    received = [PriceTick.from_json(m.value()) for m in messages]
    assert sorted(t.source_id for t in received) == sorted(t.source_id for t in ticks)
    # Keyed by coin: each coin lives on exactly one partition, in order.
    partitions: dict[str, set[int]] = {}
    for m in messages:
        partitions.setdefault(m.key().decode(), set()).add(m.partition())
    assert set(partitions) == set(COINS)
    assert all(len(p) == 1 for p in partitions.values())
    for coin in COINS:
        prices = [t.price for t in received if t.coin == coin]
        assert prices == sorted(prices)


@pytest.fixture
def private_broker(tmp_path, platform: Settings):
    """A second real broker with its own home and ports, so restarting it disturbs no one."""
    port, controller = free_port(), free_port()
    settings = load_settings(
        home=tmp_path / "home",
        kafka={"port": port, "controller_port": controller, "heap": "384m", "default_partitions": 2},
    )
    manager = Platform(settings, services=[KafkaService])
    manager.up()
    yield settings, manager
    manager.down()


def test_nothing_lost_across_broker_restart(private_broker):
    settings, manager = private_broker
    ensure_topics(settings, CATALOG)
    topic = RAW_PRICES.name(settings)
    first, second = _ticks(40, datetime(2024, 1, 1, tzinfo=UTC)), _ticks(40, datetime(2024, 1, 2, tzinfo=UTC))
    with EventProducer(settings, component="test") as producer:
        for tick in first:
            producer.send(topic, tick, key=tick.coin)
    got_first = _consume(settings, topic, "restart-group", 20)
    assert len(got_first) == 20

    assert manager.down() == ["kafka"]
    assert manager.status()[0].up is False
    manager.up()
    wait_for_broker(settings)
    # Storage is formatted once: the same cluster keeps its data and the group's offsets.
    with EventProducer(settings, component="test") as producer:
        for tick in second:
            producer.send(topic, tick, key=tick.coin)
    got_rest = _consume(settings, topic, "restart-group", 60)
    ids = [PriceTick.from_json(m.value()).source_id for m in got_first + got_rest]
    assert len(ids) == len(set(ids)) == 80
    assert set(ids) == {t.source_id for t in first + second}


def _topics_cli(settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CRYPTOPULSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "COLUMNS": "250",
    }
    return subprocess.run(
        [sys.executable, "-m", "cryptopulse", "topics"], capture_output=True, text=True, env=env, timeout=60
    )


def test_topics_cli_counts_messages_and_flags_missing_topics(isolated_settings: Settings):
    topic = RAW_PRICES.name(isolated_settings)
    with EventProducer(isolated_settings, component="test") as producer:
        for tick in _ticks(7, datetime(2024, 3, 1, tzinfo=UTC)):
            producer.send(topic, tick, key=tick.coin)
    listed = _topics_cli(isolated_settings)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if topic in line)
    assert [cell.strip() for cell in row.split("│")][2:4] == ["3", "7"]

    missing = _topics_cli(
        load_settings(kafka={"topic_prefix": f"absent-{isolated_settings.kafka.topic_prefix}"})
    )
    assert missing.returncode == 1
    assert f"{len(CATALOG)} catalog topics are missing" in missing.stderr
