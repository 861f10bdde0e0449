"""The shared Redis key schema: names, retention and TTL rules (pure; writes are tested in tests/views)."""

from __future__ import annotations

import pytest

from schemas.events import WindowSize
from schemas.redis_keys import RETENTION_SECONDS, WINDOW_SECONDS, RedisKeys, live_counter_ttl

pytestmark = pytest.mark.unit


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
    assert k.alert_seen("a:1") == "cp:alert:seen:a:1"
    assert k.quality_latest("news") == "cp:quality:latest:news"
    assert k.quality_history("news") == "cp:quality:history:news"
    assert k.quality_sources() == "cp:quality:sources"
    assert k.live_scored() == "cp:live:scored"
    assert k.live_trends() == "cp:live:trends"
    assert k.live_counters() == "cp:live:counters"
    assert k.live_counter("1m", "bitcoin") == "cp:live:counter:1m:bitcoin"
    assert k.live_volume("1m") == "cp:live:volume:1m"
    assert k.spark_components("5m", 1_764_331_200_000) == "cp:spark:agg:5m:1764331200000"
    assert k.spark_history("1h_5m", "bitcoin", "reddit") == "cp:spark:hist:1h_5m:bitcoin:reddit"
    assert k.apikey("abc") == "cp:apikey:abc"
    assert k.apikeys() == "cp:apikeys"
    assert k.ratelimit("abc") == "cp:ratelimit:abc"


def test_view_keys_reject_unknown_window_sizes() -> None:
    with pytest.raises(ValueError):
        RedisKeys("cp").trend_latest("2m", "bitcoin")


def test_every_window_size_has_a_length_and_a_retention() -> None:
    assert set(WINDOW_SECONDS) == set(WindowSize) == set(RETENTION_SECONDS)
    assert all(RETENTION_SECONDS[w] > WINDOW_SECONDS[w] for w in WindowSize)


def test_live_counter_outlives_the_next_window() -> None:
    assert live_counter_ttl(60.0) == 121
    assert live_counter_ttl(300) == 601
