"""Spark test fixtures: one SparkSession for the whole run, isolated topics/keys/folders per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.kafka import EventProducer, ensure_topics
from core.settings import Settings, load_settings
from schemas.events import Event, PriceTick, ScoredPost, SentimentLabel, Source, content_hash
from schemas.topics import ALERTS, RAW_PRICES, SCORED_POSTS, TRENDS
from tests.cleanup import discard_run_data

T0 = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0)
"""Today 01:00 UTC: Kafka record timestamps (now) stay within the backfill's offsets-for-times slack."""


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The one SparkSession of the test run (local[2], small shuffle, Kafka jars from the cache)."""
    from core.settings import get_settings
    from spark_jobs.session import build_spark

    session = build_spark(get_settings(), app_name="cryptopulse-tests")
    yield session
    session.stop()


@pytest.fixture
def spark_settings(platform: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Unique topics, Redis prefix, lake and checkpoints; topics created, deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    settings = load_settings(
        home=tmp_path / "home",
        kafka={**platform.kafka.model_dump(), "topic_prefix": f"test-spark-{tag}"},
        redis={**platform.redis.model_dump(), "key_prefix": f"test-spark-{tag}"},
        spark={**platform.spark.model_dump(), "trigger_interval": "1 second"},
    )
    ensure_topics(settings, [SCORED_POSTS, RAW_PRICES, TRENDS, ALERTS])
    yield settings
    discard_run_data(settings)


@pytest.fixture
def redis_client(platform: Settings) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(platform.redis.dsn, decode_responses=True)
    yield client  # spark_settings deletes the test's keys
    client.close()


def post(
    n: int,
    at: datetime,
    coins: list[str],
    score: float,
    confidence: float,
    label: str,
    source: str = "reddit",
    text: str | None = None,
) -> ScoredPost:
    body = text or f"test post {n} about {' '.join(coins)}"
    p_pos = max(score, 0.0)
    p_neg = max(-score, 0.0)
    return ScoredPost(
        source_id=f"t3_test{n}",
        event_time=at,
        ingest_time=at + timedelta(seconds=1),
        source=Source(source),
        text=body,
        original_length=len(body),
        coins=coins,
        content_hash=content_hash(body),
        label=SentimentLabel(label),
        score=score,
        confidence=confidence,
        p_negative=p_neg,
        p_neutral=1.0 - p_pos - p_neg,
        p_positive=p_pos,
        model_version="test-1",
        scored_time=at + timedelta(seconds=2),
    )


def tick(coin: str, at: datetime, price: float) -> PriceTick:
    return PriceTick(
        source_id=PriceTick.make_source_id(coin, at), event_time=at, ingest_time=at, coin=coin, price=price
    )


def produce(settings: Settings, records: Sequence[Event]) -> None:
    producer = EventProducer(settings, component="tests")
    for record in records:
        if isinstance(record, PriceTick):
            producer.send(RAW_PRICES.name(settings), record, key=record.coin)
        else:
            producer.send(SCORED_POSTS.name(settings), record)
    producer.flush()
