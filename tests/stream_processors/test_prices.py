"""The prices agent: valid ticks become ``price:latest`` (the newer tick wins), bad ones dead letters."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from core.settings import Settings, load_settings
from schemas.events import PriceTick
from schemas.redis_keys import RedisKeys
from scoring.holder import ModelHolder
from stream_processors.app import create_app
from tests.stream_processors.fakes import FakeRuntime

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def tick(coin: str, price: float, at: datetime) -> bytes:
    return PriceTick(source_id=f"{coin}:{at.isoformat()}", event_time=at, coin=coin, price=price).to_json()


def test_latest_price_is_written_and_bad_ticks_are_dead_lettered(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = load_settings(
        home=tmp_path,
        kafka=isolated_settings.kafka.model_dump(),
        redis=isolated_settings.redis.model_dump(),
        learning={"shadow_enabled": False},
    )
    app = create_app(settings, holder=ModelHolder("fake", lambda uri: FakeRuntime("fake/1")))
    sent: list[dict[str, Any]] = []

    async def capture(key: bytes | None = None, value: bytes | None = None, **kwargs: Any) -> Any:
        assert value is not None
        sent.append(json.loads(value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    app.parts.topics.dead_letter.send = capture  # type: ignore[method-assign]
    agent = next(a for a in app.agents.values() if a.name == "prices")

    async def scenario() -> None:
        async with agent.test_context() as context:
            await context.put(tick("bitcoin", 91_000.0, NOW), key=b"bitcoin")
            await context.put(tick("bitcoin", 90_000.0, NOW - timedelta(minutes=5)), key=b"bitcoin")  # older
            await context.put(tick("ethereum", 3_100.0, NOW), key=b"ethereum")
            await context.put(b'{"coin": "bitcoin", "price": -1}', key=b"bad")
            await context.put(b"\xff not json", key=b"junk")
        await app.parts.publisher.close()

    asyncio.run(scenario())
    client = redis.Redis.from_url(settings.redis.dsn)
    keys = RedisKeys(settings.redis.key_prefix)
    latest = PriceTick.model_validate_json(client.get(keys.price_latest("bitcoin")) or b"")
    assert latest.price == 91_000.0  # a redelivered older tick never overwrites a newer one
    assert PriceTick.model_validate_json(client.get(keys.price_latest("ethereum")) or b"").price == 3_100.0
    assert {(letter["original_key"], letter["reason"], letter["component"]) for letter in sent} == {
        ("bad", "invalid_schema", "stream.prices"),
        ("junk", "invalid_schema", "stream.prices"),
    }
    client.close()
