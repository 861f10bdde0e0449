"""The foreachBatch sink against real Redis: a replayed micro-batch changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from core.settings import Settings
from schemas.events import TrendWindow
from schemas.redis_keys import RedisKeys
from spark_jobs.aggregations import PRICE_SOURCE, TOTAL_COIN
from spark_jobs.lake import trends_path
from spark_jobs.sink_redis import history_members
from spark_jobs.stream import TrendSink
from tests.spark_jobs.test_aggregations import MS, comp
from tests.spark_jobs.test_stream import snapshot

pytestmark = pytest.mark.integration


def batch(minute: int, btc: int, eth: int) -> list[dict[str, Any]]:
    start = MS + minute * 60_000
    at = {
        "window_start": start,
        "window_end": start + 60_000,
        "last_event": start + 5,
        "last_ingest": start + 9,
    }
    return [
        comp("bitcoin", "all", btc, s_score=0.5 * btc, s_conf=btc, s_wscore=0.5 * btc, n_pos=btc, **at),
        comp("ethereum", "all", eth, s_score=-0.2 * eth, s_conf=eth, s_wscore=-0.2 * eth, n_neu=eth, **at),
        comp(TOTAL_COIN, "all", btc + eth, **at),
        comp(
            "bitcoin",
            PRICE_SOURCE,
            0,
            p_open=10.0,
            p_close=11.0,
            p_high=12.0,
            p_low=9.0,
            t_open=start,
            t_close=start + 50_000,
            **at,
        ),
    ]


def lake_windows(settings: Settings) -> list[dict[str, Any]]:
    """The trend lake as readers see it: the newest row of each window (``read_trends``)."""
    root = trends_path(settings)
    frames = []
    for path in sorted(root.rglob("*.parquet")):
        frame = pd.read_parquet(path)
        frame["window"] = path.parent.name.split("=", 1)[1]
        frames.append(frame)
    if not frames:
        return []
    lake = pd.concat(frames).sort_values(["ingest_time", "volume"], kind="stable")
    lake = lake.drop_duplicates(["coin", "window", "source", "window_start"], keep="last")
    lake = lake.sort_values(["coin", "window", "source", "window_start"])
    return lake.astype(object).where(lake.notna(), None).to_dict("records")  # NaN != NaN


def test_replayed_batch_leaves_redis_and_lake_unchanged(spark_settings: Settings, redis_client: Any) -> None:
    s, r = spark_settings, redis_client
    sink = TrendSink(s, client=r, run_token="t", publish=False)
    for i, (btc, eth) in enumerate([(2, 1), (3, 3), (1, 4), (6, 2)]):
        sink.process(batch(i, btc, eth), i)
    sink.close()
    before, lake = snapshot(r, s), lake_windows(s)
    assert len(lake) == 4 * 2  # bitcoin (with its prices) and ethereum, each of 4 minutes
    sink.process(batch(3, 6, 2), 3)  # replay of the last micro-batch
    sink.close()
    assert snapshot(r, s) == before
    assert lake_windows(s) == lake

    keys = RedisKeys(s.redis.key_prefix)
    latest = TrendWindow.model_validate_json(r.get(keys.trend_latest("1m", "bitcoin")))
    assert (
        latest.volume == 6 and latest.social_dominance == 0.75 and latest.price_return == pytest.approx(0.1)
    )
    assert latest.volume_zscore == pytest.approx((6 - 2) / (2 / 3) ** 0.5)  # previous 2, 3, 1
    assert r.zscore(keys.trending("1m"), "bitcoin") == pytest.approx(latest.volume_zscore)


def test_late_coin_updates_dominance_of_the_others(spark_settings: Settings, redis_client: Any) -> None:
    s, r = spark_settings, redis_client
    sink = TrendSink(s, client=r, run_token="t", publish=False)
    first = [*batch(0, 2, 0)[:1], comp(TOTAL_COIN, "all", 2)]
    sink.process(first, 0)
    keys = RedisKeys(s.redis.key_prefix)
    assert TrendWindow.model_validate_json(r.get(keys.trend_latest("1m", "bitcoin"))).social_dominance == 1.0
    # Ethereum arrives in a later batch: Spark re-emits only ethereum and the total row.
    sink.process([comp("ethereum", "all", 2, s_conf=2.0), comp(TOTAL_COIN, "all", 4)], 1)
    btc = TrendWindow.model_validate_json(r.get(keys.trend_latest("1m", "bitcoin")))
    assert (btc.volume, btc.social_dominance) == (2, 0.5)


def test_a_backfill_writes_only_what_redis_keeps(spark_settings: Settings, redis_client: Any) -> None:
    """Windows older than their series' retention (a day of 1m windows) are not written:
    Redis ends exactly as if every window had been written and trimmed."""
    from spark_jobs.aggregations import build_trend_frame, components_frame
    from spark_jobs.sink_redis import TrendStore, components_within_retention, within_retention

    rows = []
    for m in range(0, 30 * 60, 7):  # 30 hours, a window every 7 minutes; ethereum stops after 4 h
        for coin in ("bitcoin", "ethereum") if m < 4 * 60 else ("bitcoin",):
            start = MS + m * 60_000
            for source in ("all", "reddit"):
                rows.append(
                    comp(coin, source, 1 + m % 5, window_start=start, window_end=start + 60_000, s_score=0.1)
                )
    components = components_frame(rows)
    trends = build_trend_frame(components)
    recent = within_retention(trends)
    kept = recent.groupby("coin")["window_start"].agg(["min", "max"])
    day, newest = 24 * 3600 * 1000, MS + 1799 * 60_000  # bitcoin's newest window: minute 1799
    assert kept.loc["bitcoin", "max"] == newest
    assert newest - day <= kept.loc["bitcoin", "min"] < newest - day + 7 * 60_000
    assert len(recent[recent["coin"] == "ethereum"]) == len(trends[trends["coin"] == "ethereum"])
    lo, hi = MS, MS + 30 * 3600 * 1000 - 1

    def write(prefix: str, frame: pd.DataFrame, parts: pd.DataFrame) -> dict[str, Any]:
        store = TrendStore(redis_client, prefix)
        store.replace_components(parts)
        store.replace_history(frame, lo, hi)
        store.write_trends(frame, publish=False, history=False)
        store.drop_stale(frame, ["1m"], lo, hi)
        return {
            key[len(prefix) + 1 :]: redis_client.zrange(key, 0, -1, withscores=True)
            for key in redis_client.scan_iter(match=f"{prefix}:*")
            if redis_client.type(key) == "zset"
        }

    prefix = spark_settings.redis.key_prefix  # the fixture deletes {prefix}:* afterwards
    everything = write(f"{prefix}:all", trends, components)
    written = write(f"{prefix}:recent", recent, components_within_retention(components))
    assert written == everything
    assert {"trend:ts:1m:bitcoin", "spark:hist:1m:bitcoin:reddit"} <= set(written)
    oldest_hash = min(
        int(key.rsplit(":", 1)[1]) for key in redis_client.scan_iter(match=f"{prefix}:recent:spark:agg:1m:*")
    )
    assert newest - day <= oldest_hash < newest - day + 7 * 60_000


def test_history_members_are_the_compact_json_of_each_point() -> None:
    """Built column by column for the backfill; the same text as ``json.dumps`` of the point."""
    frame = pd.DataFrame(
        {
            "window_start": [MS, MS + 60_000, MS + 120_000, MS + 180_000],
            "volume": [3, 0, 12, 7],
            "weighted_score": [0.125, None, -0.3333333333, 1e-05],
            "price_return": [float("nan"), 0.0012, -0.0, float("inf")],
        }
    )
    expected = [
        json.dumps(
            {
                "t": int(row.window_start),
                "v": int(row.volume),
                "w": None if pd.isna(row.weighted_score) else float(row.weighted_score),
                "r": None if pd.isna(row.price_return) else float(row.price_return),
            },
            separators=(",", ":"),
        )
        for row in frame.itertuples()
    ]
    assert history_members(frame) == expected
    point = json.loads(history_members(frame)[2])
    assert point == {"t": MS + 120_000, "v": 12, "w": -0.3333333333, "r": -0.0}


def _redis_state(client: Any, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` (named without it) with its value, for comparisons."""
    read = {
        "string": client.get,
        "hash": client.hgetall,
        "set": lambda key: sorted(client.smembers(key)),
        "zset": lambda key: client.zrange(key, 0, -1, withscores=True),
    }
    return {key[len(prefix) :]: read[client.type(key)](key) for key in client.scan_iter(match=f"{prefix}:*")}


def test_the_three_writers_at_once_write_what_the_serial_steps_do(
    spark_settings: Settings, redis_client: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``replace_outputs`` runs the lake, the job's Redis state and the views in three threads:
    the result must be the serial steps' result, and a failure of any writer fails it."""
    import redis

    import spark_jobs.backfill as backfill
    from spark_jobs.aggregations import WINDOW_SPECS, build_trend_frame, components_frame
    from spark_jobs.lake import replace_trend_partitions
    from spark_jobs.sink_redis import TrendStore, components_within_retention, within_retention

    rows = [
        comp(
            coin,
            source,
            1 + m % 4,
            window_start=MS + m * 60_000,
            window_end=MS + (m + 1) * 60_000,
            s_score=0.2,
        )
        for m in range(0, 6 * 60, 3)
        for coin in ("bitcoin", "ethereum")
        for source in ("all", "news")
    ]
    components = components_frame(rows)
    trends = build_trend_frame(components)
    recent = within_retention(trends)
    lo, hi = MS, MS + 6 * 3600 * 1000 - 1
    prefix = spark_settings.redis.key_prefix  # the fixture deletes {prefix}:* afterwards
    windows = [w.value for w in WINDOW_SPECS]

    serial = TrendStore(redis_client, f"{prefix}:serial")
    serial.replace_components(components_within_retention(components))
    serial.replace_history(recent, lo, hi)
    serial.write_trends(recent, publish=False, history=False)
    serial.drop_stale(recent, windows, lo, hi)
    replace_trend_partitions(trends, tmp_path / "serial-lake")

    at_once = TrendStore(redis_client, f"{prefix}:at-once")
    partitions, written, removed = backfill.replace_outputs(
        at_once, components, trends, recent, lo, hi, tmp_path / "at-once-lake"
    )
    assert (written, removed) == (int((recent["source"] == "all").sum()), 0) and partitions > 0
    assert _redis_state(redis_client, f"{prefix}:at-once") == _redis_state(redis_client, f"{prefix}:serial")

    def lake(name: str) -> dict[str, pd.DataFrame]:  # partition folder -> its rows (file names are random)
        root = tmp_path / name
        return {str(path.parent.relative_to(root)): pd.read_parquet(path) for path in root.rglob("*.parquet")}

    expected, got = lake("serial-lake"), lake("at-once-lake")
    assert sorted(got) == sorted(expected) != []
    for partition, frame in expected.items():
        pd.testing.assert_frame_equal(got[partition], frame)

    broken = TrendStore(redis_client, f"{prefix}:broken")
    redis_client.set(broken.keys.spark_history("1m", "bitcoin", "all"), "not a sorted set")
    with pytest.raises(redis.ResponseError):  # the state thread's failure
        backfill.replace_outputs(broken, components, trends, recent, lo, hi, tmp_path / "broken-lake")

    def full_disk(*_args: Any) -> int:
        raise OSError("no space left on device")

    monkeypatch.setattr(backfill, "replace_trend_partitions", full_disk)
    with pytest.raises(OSError, match="no space left"):  # the lake writer's failure
        backfill.replace_outputs(at_once, components, trends, recent, lo, hi, tmp_path / "at-once-lake")
