"""The streaming job against the real broker and Redis: hand-computed windows, watermark, restart."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from core.settings import Settings
from schemas.events import TrendWindow
from schemas.redis_keys import RedisKeys
from spark_jobs.stream import start_stream
from tests.spark_jobs.conftest import T0, post, produce, tick

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_available(spark: Any, settings: Settings, client: Any) -> None:
    job = start_stream(spark, settings, available_now=True, client=client)
    job.await_termination()


def ts(client: Any, settings: Settings, window: str, coin: str) -> list[TrendWindow]:
    key = RedisKeys(settings.redis.key_prefix).trend_ts(window, coin)
    return [TrendWindow.model_validate_json(m) for m in client.zrange(key, 0, -1)]


def at(client: Any, settings: Settings, window: str, coin: str, start: Any) -> TrendWindow:
    found = [w for w in ts(client, settings, window, coin) if w.window_start == start]
    assert len(found) == 1, [w.window_start for w in ts(client, settings, window, coin)]
    return found[0]


def snapshot(client: Any, settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(client.scan_iter(match=f"{settings.redis.key_prefix}:*", count=1000)):
        kind = client.type(key)
        if kind == "string":
            out[key] = client.get(key)
        elif kind == "zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            out[key] = client.hgetall(key)
        elif kind == "set":
            out[key] = sorted(client.smembers(key))
    return out


BASE = [
    post(1, T0 + timedelta(seconds=10), ["bitcoin"], 0.8, 0.9, "positive"),
    post(2, T0 + timedelta(seconds=40), ["bitcoin", "ethereum"], -0.5, 0.5, "negative", source="news"),
    post(3, T0 + timedelta(seconds=90), ["ethereum"], 0.0, 1.0, "neutral"),
    post(1, T0 + timedelta(seconds=10), ["bitcoin"], 0.8, 0.9, "positive"),  # duplicate delivery
    tick("bitcoin", T0 + timedelta(seconds=5), 100.0),
    tick("bitcoin", T0 + timedelta(seconds=30), 110.0),
    tick("bitcoin", T0 + timedelta(seconds=50), 105.0),
]


def test_stream_windows_watermark_and_restart(
    spark: Any, spark_settings: Settings, redis_client: Any
) -> None:
    s, r = spark_settings, redis_client
    keys = RedisKeys(s.redis.key_prefix)
    produce(s, BASE)
    with r.pubsub() as pubsub:
        pubsub.subscribe(keys.live_trends())
        run_available(spark, s, r)
        published = []
        while (msg := pubsub.get_message(timeout=1.0)) is not None:
            if msg["type"] == "message":
                published.append(json.loads(msg["data"]))
    assert published, "trend updates are published on live:trends"

    btc = at(r, s, "1m", "bitcoin", T0)
    assert btc.volume == 2
    assert btc.mean_score == pytest.approx(0.15)
    assert btc.weighted_score == pytest.approx((0.9 * 0.8 - 0.5 * 0.5) / 1.4)
    assert (btc.positive_share, btc.neutral_share, btc.negative_share) == (0.5, 0.0, 0.5)
    assert btc.social_dominance == pytest.approx(2 / 3)
    assert (btc.price_open, btc.price_high, btc.price_low, btc.price_close) == (100.0, 110.0, 100.0, 105.0)
    assert btc.price_return == pytest.approx(0.05)
    assert btc.volume_zscore is None and btc.sentiment_return_corr is None
    eth = at(r, s, "1m", "ethereum", T0)
    assert (eth.volume, eth.mean_score, eth.social_dominance) == (1, -0.5, pytest.approx(1 / 3))
    eth2 = at(r, s, "1m", "ethereum", T0 + timedelta(minutes=1))
    assert (eth2.volume, eth2.mean_score, eth2.social_dominance, eth2.price_open) == (1, 0.0, 1.0, None)
    five = at(r, s, "5m", "bitcoin", T0)
    assert (five.volume, five.social_dominance) == (2, 0.5)
    assert at(r, s, "5m", "ethereum", T0).social_dominance == 0.5
    assert at(r, s, "1h", "ethereum", T0).volume == 2
    assert at(r, s, "1d", "bitcoin", T0.replace(hour=0)).volume == 2
    sliding = ts(r, s, "1h_5m", "bitcoin")
    assert len(sliding) == 12 and all(w.volume == 2 for w in sliding)
    latest = TrendWindow.model_validate_json(r.get(keys.trend_latest("1m", "ethereum")))
    assert latest.window_start == T0 + timedelta(minutes=1)

    # Restart from the checkpoint with nothing new: nothing is duplicated or changed.
    before = snapshot(r, s)
    run_available(spark, s, r)
    assert snapshot(r, s) == before

    # Advance event time to 12:00 (watermark -> 11:50), then send one late event inside the
    # watermark (11:55) and one beyond it (10:00:20): only the first is counted.
    produce(s, [post(10, T0 + timedelta(hours=2), ["bitcoin"], 0.5, 1.0, "positive")])
    run_available(spark, s, r)
    produce(
        s,
        [
            post(11, T0 + timedelta(hours=1, minutes=55, seconds=5), ["bitcoin"], 1.0, 1.0, "positive"),
            post(12, T0 + timedelta(seconds=20), ["bitcoin"], -1.0, 1.0, "negative"),
        ],
    )
    run_available(spark, s, r)
    late = at(r, s, "1m", "bitcoin", T0 + timedelta(hours=1, minutes=55))
    assert (late.volume, late.mean_score) == (1, 1.0)
    assert at(r, s, "1m", "bitcoin", T0) == btc
    assert at(r, s, "1d", "bitcoin", T0.replace(hour=0)).volume == 4  # 2 + 12:00 + 11:55
