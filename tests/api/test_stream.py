"""GET /v1/stream relays Redis pub/sub messages as Server-Sent Events."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from core.settings import Settings
from schemas.redis_keys import RedisKeys
from views import RedisViewWriter

pytestmark = pytest.mark.integration


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln and not ln.startswith(":")]
        if not lines:
            continue
        event = next(ln[7:] for ln in lines if ln.startswith("event: "))
        data = "\n".join(ln[6:] for ln in lines if ln.startswith("data: "))
        events.append((event, json.loads(data)))
    return events


def _publish_until(stop: threading.Event, action: Any) -> threading.Thread:
    """Keep publishing until the stream has closed (the subscription starts at an unknown moment)."""

    def run() -> None:
        while not stop.wait(0.1):
            action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def publisher(redis_settings: Settings) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(redis_settings.redis.dsn)
    yield client, redis_settings.redis.key_prefix
    client.close()


def test_stream_receives_scored_post_and_trend(
    client: TestClient, publisher: tuple[redis.Redis, str], seeded: dict[str, Any]
) -> None:
    sync, prefix = publisher
    post = seeded["posts"][0]
    window = seeded["windows"][0]
    stop = threading.Event()

    views = RedisViewWriter(sync, prefix)

    def publish() -> None:
        views.add_scored_posts([post])
        views.add_trend_windows([window])
        views.flush()

    thread = _publish_until(stop, publish)
    try:
        r = client.get("/v1/stream", params={"max_events": 4})
    finally:
        stop.set()
        thread.join()
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert len(events) == 4
    kinds = {e for e, _ in events}
    assert kinds == {"scored", "trend"}
    scored = next(d for e, d in events if e == "scored")
    assert scored["source_id"] == post.source_id and scored["label"] == post.label.value
    trend = next(d for e, d in events if e == "trend")
    assert trend["coin"] == window.coin


def test_stream_filters_by_event_and_coin(client: TestClient, publisher: tuple[redis.Redis, str]) -> None:
    sync, prefix = publisher
    keys = RedisKeys(prefix)
    stop = threading.Event()

    def publish() -> None:
        sync.publish(keys.live_scored(), json.dumps({"source_id": "a", "coins": ["ethereum"]}))
        sync.publish(keys.live_scored(), json.dumps({"source_id": "b", "coins": ["bitcoin"]}))
        sync.publish(keys.live_trends(), json.dumps({"coin": "bitcoin"}))

    thread = _publish_until(stop, publish)
    try:
        r = client.get("/v1/stream", params={"events": "scored", "coin": "bitcoin", "max_events": 2})
    finally:
        stop.set()
        thread.join()
    events = parse_sse(r.text)
    assert [(e, d["source_id"]) for e, d in events] == [("scored", "b"), ("scored", "b")]


def test_stream_takes_comma_separated_events_as_the_readme_shows(
    client: TestClient, publisher: tuple[redis.Redis, str]
) -> None:
    """README: ``curl -N '127.0.0.1:8000/v1/stream?events=scored,trend&coin=ethereum'``."""
    sync, prefix = publisher
    keys = RedisKeys(prefix)
    stop = threading.Event()

    def publish() -> None:
        sync.publish(keys.live_scored(), json.dumps({"source_id": "e", "coins": ["ethereum"]}))
        sync.publish(keys.live_trends(), json.dumps({"coin": "ethereum"}))

    thread = _publish_until(stop, publish)
    try:
        r = client.get("/v1/stream?events=scored,trend&coin=ethereum&max_events=4")
    finally:
        stop.set()
        thread.join()
    assert r.status_code == 200, r.text
    assert {event for event, _ in parse_sse(r.text)} == {"scored", "trend"}


def test_stream_bad_params(client: TestClient) -> None:
    assert client.get("/v1/stream", params={"events": "prices"}).status_code == 422
    assert client.get("/v1/stream?events=scored,prices").status_code == 422
    assert client.get("/v1/stream", params={"max_events": 0}).status_code == 422


def test_stream_over_real_http(live_api: Any, publisher: tuple[redis.Redis, str]) -> None:
    """Through uvicorn, events arrive while the response is still open (true streaming)."""
    import httpx

    sync, prefix = publisher
    stop = threading.Event()
    thread = _publish_until(
        stop, lambda: sync.publish(RedisKeys(prefix).live_scored(), '{"source_id": "live"}')
    )
    try:
        with httpx.stream("GET", f"{live_api.url}/v1/stream", timeout=10) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            buffer = ""
            for chunk in response.iter_text():
                buffer += chunk
                if "data: " in buffer and buffer.endswith("\n\n"):
                    break
    finally:
        stop.set()
        thread.join()
    assert parse_sse(buffer)[0] == ("scored", {"source_id": "live"})
