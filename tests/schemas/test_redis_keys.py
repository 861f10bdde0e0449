"""The shared Redis key schema and its idempotent writers (used by Spark, faust and the API)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
import redis.asyncio as aioredis

from cryptopulse.settings import Settings
from schemas.events import Alert, AlertSeverity, PriceTick, TrendWindow, WindowSize
from schemas.redis_keys import (
    ALERTS_LATEST_MAX,
    POSTS_LATEST_MAX,
    RETENTION_SECONDS,
    RedisKeys,
    arecord_scored_post,
    awrite_trend_windows,
    delete_prefixed_keys,
    record_alert,
    record_price,
    record_scored_post,
    write_trend_windows,
)
from tests.api.seed import make_window, seed_views

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.unit
def test_key_names() -> None:
    k = RedisKeys("cp")
    assert k.trend_latest("5m", "bitcoin") == "cp:trend:latest:5m:bitcoin"
    assert k.trend_ts(WindowSize.ONE_HOUR_SLIDING, "solana") == "cp:trend:ts:1h_5m:solana"
    assert k.trending("1d") == "cp:trending:1d"
    assert k.coins() == "cp:coins"
    assert k.coin_meta("bitcoin") == "cp:coin:meta:bitcoin"
    assert k.price_latest("bitcoin") == "cp:price:latest:bitcoin"
    assert k.posts_latest() == "cp:posts:latest"
    assert k.alerts_latest() == "cp:alerts:latest"
    assert k.live_scored() == "cp:live:scored"
    assert k.live_trends() == "cp:live:trends"
    assert k.live_counter("1m", "bitcoin") == "cp:live:counter:1m:bitcoin"
    assert k.apikey("abc") == "cp:apikey:abc"
    with pytest.raises(ValueError):
        k.trend_latest("2m", "bitcoin")
    assert set(RETENTION_SECONDS) == set(WindowSize)


@pytest.fixture
def rk(platform: Settings) -> Iterator[tuple[redis.Redis, str]]:
    prefix = f"test-keys-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(platform.redis.dsn)
    yield client, prefix
    delete_prefixed_keys(client, prefix)
    client.close()


def test_delete_prefixed_keys_deletes_only_that_prefix(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    other = f"{prefix}x"  # shares the text but not the ``prefix:`` namespace
    for i in range(7):
        client.set(f"{prefix}:k{i}", i)
    client.set(f"{other}:keep", 1)
    try:
        assert delete_prefixed_keys(client, prefix, chunk=3) == 7  # more keys than one chunk
        assert list(client.scan_iter(f"{prefix}:*")) == []
        assert client.get(f"{other}:keep") == b"1"
    finally:
        client.delete(f"{other}:keep")


def _dump(client: redis.Redis, prefix: str) -> dict[bytes, object]:
    """Every key under the prefix with its full value, for byte-exact comparisons."""
    out: dict[bytes, object] = {}
    for key in sorted(client.scan_iter(f"{prefix}:*")):
        kind = client.type(key)
        if kind == b"string":
            out[key] = client.get(key)
        elif kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = sorted(client.smembers(key))
        elif kind == b"list":
            out[key] = client.lrange(key, 0, -1)
    return out


@pytest.mark.integration
def test_replaying_everything_leaves_redis_identical(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    seeded = seed_views(client, prefix, now=T0)
    before = _dump(client, prefix)
    seed_views(client, prefix, now=T0)  # the same batch again
    write_trend_windows(client, prefix, list(reversed(seeded["windows"])))  # and out of order
    assert _dump(client, prefix) == before


@pytest.mark.integration
def test_latest_only_moves_forward_and_ts_replaces_same_start(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    k = RedisKeys(prefix)
    w1 = make_window("bitcoin", WindowSize.ONE_MINUTE, T0, 1)
    w2 = make_window("bitcoin", WindowSize.ONE_MINUTE, T0 + timedelta(minutes=1), 2)
    assert write_trend_windows(client, prefix, [w2]) == 1
    assert write_trend_windows(client, prefix, [w1]) == 0  # older: kept in ts, not latest
    assert TrendWindow.model_validate_json(client.get(k.trend_latest("1m", "bitcoin"))) == w2  # type: ignore[arg-type]
    assert client.zcard(k.trend_ts("1m", "bitcoin")) == 2
    revised = w2.model_copy(update={"volume": 999})  # a late update of the same window
    assert write_trend_windows(client, prefix, [revised]) == 1
    members: list[bytes] = client.zrangebyscore(  # type: ignore[assignment]
        k.trend_ts("1m", "bitcoin"), w2.window_start.timestamp(), "+inf"
    )
    assert [TrendWindow.model_validate_json(m).volume for m in members] == [999]
    assert client.zscore(k.trending("1m"), "bitcoin") == pytest.approx(w2.volume_zscore)
    assert client.smembers(k.coins()) == {b"bitcoin"}


@pytest.mark.integration
def test_per_source_windows_are_ignored(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    w = make_window("bitcoin", WindowSize.ONE_MINUTE, T0).model_copy(update={"source": "reddit"})
    assert write_trend_windows(client, prefix, [w]) == 0
    assert not client.exists(RedisKeys(prefix).coins())


@pytest.mark.integration
def test_retention_trims_from_newest(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    k = RedisKeys(prefix)
    day = RETENTION_SECONDS[WindowSize.ONE_MINUTE]
    old = make_window("solana", WindowSize.ONE_MINUTE, T0)
    edge = make_window("solana", WindowSize.ONE_MINUTE, T0 + timedelta(seconds=60))
    new = make_window("solana", WindowSize.ONE_MINUTE, T0 + timedelta(seconds=60 + day))
    write_trend_windows(client, prefix, [old, edge, new])
    rows: list[tuple[bytes, float]] = client.zrange(k.trend_ts("1m", "solana"), 0, -1, withscores=True)  # type: ignore[assignment]
    starts = [s for _, s in rows]
    assert starts == [edge.window_start.timestamp(), new.window_start.timestamp()]


@pytest.mark.integration
def test_lists_are_deduplicated_and_capped(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    k = RedisKeys(prefix)
    seeded = seed_views(client, prefix, now=T0)
    post = seeded["posts"][0]
    for i in range(POSTS_LATEST_MAX + 10):
        record_scored_post(client, prefix, post.model_copy(update={"source_id": f"t3_x{i}"}), publish=False)
    record_scored_post(client, prefix, post, publish=False)
    assert client.llen(k.posts_latest()) == POSTS_LATEST_MAX
    assert client.lrange(k.posts_latest(), 0, -1).count(post.model_dump_json().encode()) == 1
    for i in range(ALERTS_LATEST_MAX + 5):
        record_alert(
            client,
            prefix,
            Alert(
                source_id=f"a{i}",
                event_time=T0,
                kind="volume_spike",
                severity=AlertSeverity.INFO,
                message="m",
            ),
        )
    assert client.llen(k.alerts_latest()) == ALERTS_LATEST_MAX


@pytest.mark.integration
def test_price_keeps_newest(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    newer = PriceTick(source_id="b:2", event_time=T0 + timedelta(minutes=1), coin="bitcoin", price=2.0)
    older = PriceTick(source_id="b:1", event_time=T0, coin="bitcoin", price=1.0)
    assert record_price(client, prefix, newer)
    assert not record_price(client, prefix, older)
    stored = PriceTick.model_validate_json(client.get(RedisKeys(prefix).price_latest("bitcoin")))  # type: ignore[arg-type]
    assert stored.price == 2.0


@pytest.mark.integration
def test_async_writers_match_sync(rk: tuple[redis.Redis, str], platform: Settings) -> None:
    client, prefix = rk
    seeded = seed_views(client, f"{prefix}:sync", now=T0)
    windows, post = seeded["windows"], seeded["posts"][0]
    other = f"{prefix}:async"

    async def run() -> None:
        a = aioredis.Redis.from_url(platform.redis.dsn)
        try:
            assert await awrite_trend_windows(a, other, windows, publish=False) > 0
            await arecord_scored_post(a, other, post, publish=False)
        finally:
            await a.aclose()

    asyncio.run(run())
    sync_latest = client.get(RedisKeys(f"{prefix}:sync").trend_latest("1h", "bitcoin"))
    assert client.get(RedisKeys(other).trend_latest("1h", "bitcoin")) == sync_latest
    assert client.zcard(RedisKeys(other).trend_ts("1m", "ethereum")) == 30
