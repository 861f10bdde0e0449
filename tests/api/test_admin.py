"""/v1/admin: the Kafka view (topics, offsets, consumer-group lag, latest messages) on isolated topics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient

from api.main import create_app
from api.scopes import Scope
from api.security import create_api_key
from core.kafka import EventProducer
from core.settings import Settings
from schemas.topics import SCORED_POSTS
from tests.api.conftest import FakeRuntime, make_settings
from tests.api.seed import seed_views

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka_client(isolated_settings: Settings) -> Iterator[tuple[TestClient, Settings, list[Any]]]:
    import redis

    settings = make_settings(isolated_settings, prefix=isolated_settings.redis.key_prefix)
    sync = redis.Redis.from_url(settings.redis.dsn)
    posts = seed_views(sync, settings.redis.key_prefix)["posts"]
    topic = SCORED_POSTS.name(settings)
    with EventProducer(settings, component="admin-test") as producer:
        for post in posts:
            producer.send(topic, post)
        producer.flush()
    with TestClient(create_app(settings, runtime=FakeRuntime())) as c:
        yield c, settings, posts
    keys = list(sync.scan_iter(f"{settings.redis.key_prefix}:*"))
    if keys:
        sync.delete(*keys)


def test_topics_with_offsets(kafka_client: tuple[TestClient, Settings, list[Any]]) -> None:
    client, settings, posts = kafka_client
    body = client.get("/v1/admin/topics").json()
    names = {t["name"]: t for t in body["topics"]}
    scored = names[SCORED_POSTS.name(settings)]
    assert scored["messages"] == len(posts) and scored["partitions"] == len(scored["detail"])
    assert all(n.startswith(settings.kafka.topic_prefix + ".") for n in names)  # only this deployment's


def test_latest_messages_and_unknown_topic(kafka_client: tuple[TestClient, Settings, list[Any]]) -> None:
    client, settings, posts = kafka_client
    topic = SCORED_POSTS.name(settings)
    body = client.get(f"/v1/admin/topics/{topic}/messages", params={"limit": 10}).json()
    assert body["count"] == len(posts)
    assert {m["key"] for m in body["messages"]} == {p.source_id for p in posts}
    assert any("Bitcoin ETF" in m["value"] for m in body["messages"])
    assert client.get(f"/v1/admin/topics/{topic}/messages", params={"limit": 2}).json()["count"] == 2
    r = client.get(f"/v1/admin/topics/{settings.kafka.topic_prefix}.nope/messages")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/admin/topics/__consumer_offsets/messages").status_code == 404  # not ours
    assert client.get("/v1/admin/topics/bad%20name/messages").status_code == 422


def test_consumer_group_lag(kafka_client: tuple[TestClient, Settings, list[Any]]) -> None:
    client, settings, posts = kafka_client
    topic = SCORED_POSTS.name(settings)
    group = f"{settings.kafka.topic_prefix}-lag-test"
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in range(3)], asynchronous=False)
    finally:
        consumer.close()
    body = client.get("/v1/admin/consumer-groups").json()
    mine = next(g for g in body["groups"] if g["group"] == group)
    assert mine["lag"] == len(posts)
    assert {p["topic"] for p in mine["partitions"]} == {topic}


def test_admin_behind_auth(kafka_client: tuple[TestClient, Settings, list[Any]]) -> None:
    import redis

    _, settings, _ = kafka_client
    secured = make_settings(settings, prefix=settings.redis.key_prefix, auth_enabled=True)
    with TestClient(create_app(secured, runtime=FakeRuntime())) as client:
        assert client.get("/v1/admin/topics").status_code == 401
        sync = redis.Redis.from_url(settings.redis.dsn)
        reader, _ = create_api_key(sync, settings.redis.key_prefix, "reader")
        assert client.get("/v1/admin/topics", headers={"X-API-Key": reader}).status_code == 403
        key, _ = create_api_key(sync, settings.redis.key_prefix, "ops", scopes=frozenset({Scope.ADMIN}))
        assert client.get("/v1/admin/topics", headers={"X-API-Key": key}).status_code == 200


def test_kafka_down_is_503(redis_settings: Settings) -> None:
    settings = make_settings(redis_settings, prefix=redis_settings.redis.key_prefix)
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1"})}
    )
    with TestClient(create_app(settings, runtime=FakeRuntime())) as client:
        r = client.get("/v1/admin/topics")
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
        assert "Kafka" in r.json()["detail"] or "Kafka" in r.json()["title"]
