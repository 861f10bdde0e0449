"""Backfill against the real broker and Redis: reproduces the stream, is idempotent, re-scores."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from core.settings import Settings
from spark_jobs.backfill import run_backfill
from spark_jobs.lake import read_trends
from spark_jobs.stream import start_stream
from tests.spark_jobs.conftest import T0, post, produce, tick

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COINS = ["bitcoin", "ethereum", "solana"]


def dataset() -> list[Any]:
    """40 minutes of posts on three coins from two sources, with a price tick every minute."""
    records: list[Any] = []
    n = 0
    for minute in range(40):
        for j in range(1 + minute % 3):
            n += 1
            coins = [COINS[(minute + j) % 3]] + ([COINS[(minute + j + 1) % 3]] if n % 4 == 0 else [])
            score = round(((n * 37) % 21 - 10) / 10, 2)
            label = "positive" if score > 0.2 else "negative" if score < -0.2 else "neutral"
            at = T0 + timedelta(minutes=minute, seconds=7 * j + 3)
            records.append(
                post(100 + n, at, coins, score, 0.5 + (n % 5) / 10, label, "news" if n % 3 else "reddit")
            )
        for k, coin in enumerate(COINS):
            records.append(
                tick(coin, T0 + timedelta(minutes=minute, seconds=k), 100.0 + k * 10 + (minute * 7) % 11)
            )
    return records


def views(client: Any, settings: Settings, *, internal: bool = False) -> dict[str, Any]:
    """Public views (plus the job's series history); ``internal`` adds the component hashes."""
    out: dict[str, Any] = {}
    prefix = settings.redis.key_prefix
    for key in sorted(client.scan_iter(match=f"{prefix}:*", count=1000)):
        if ":spark:agg:" in key and not internal:
            continue
        kind = client.type(key)
        if kind == "string":
            out[key] = json.loads(client.get(key))
        elif kind == "zset":
            out[key] = [(_json(m), s) for m, s in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "hash":
            out[key] = client.hgetall(key)
        elif kind == "set":
            out[key] = sorted(client.smembers(key))
    return out


def _json(member: str) -> Any:
    return json.loads(member) if member.startswith("{") else member


def lake_rows(spark: Any, settings: Settings) -> list[dict[str, Any]]:
    df = read_trends(spark, settings).drop("date")
    rows = [r.asDict() for r in df.collect()]
    return sorted(rows, key=lambda r: (r["window"], r["coin"], r["source"], r["window_start"]))


def test_backfill_reproduces_stream_and_is_idempotent(
    spark: Any, spark_settings: Settings, redis_client: Any
) -> None:
    s, r = spark_settings, redis_client
    produce(s, dataset())
    start_stream(spark, s, available_now=True, client=r).await_termination()
    streamed, streamed_lake = views(r, s), lake_rows(spark, s)
    assert any(":trend:ts:1h_5m:" in k for k in streamed)
    series = [m for k, v in streamed.items() if ":trend:ts:" in k for m, _ in v]
    assert any(m["volume_zscore"] for m in series) and any(m["sentiment_return_corr"] for m in series)

    first = run_backfill(spark, s, T0.date(), T0.date(), source="kafka", client=r)
    assert first.events == len({(type(x).__name__, x.source_id) for x in dataset()})
    assert views(r, s) == streamed
    assert lake_rows(spark, s) == streamed_lake

    after_first = views(r, s, internal=True)
    second = run_backfill(spark, s, T0.date(), T0.date(), source="lake", client=r)
    assert second.events == first.events and second.trends == first.trends
    assert views(r, s, internal=True) == after_first
    assert lake_rows(spark, s) == streamed_lake
    assert second.stale_removed == 0


def test_backfill_rescores_with_model(spark: Any, spark_settings: Settings, redis_client: Any) -> None:
    from scoring.runtime import SentimentRuntime
    from tests.tiny_model import tiny_model_dir

    s, r = spark_settings, redis_client
    model = tiny_model_dir(s)
    texts = [f"bitcoin is going to the moon, great news number {i}" for i in range(3)] + [
        "bitcoin crashed again, terrible loss and fear everywhere"
    ]
    records = [
        post(500 + i, T0 + timedelta(seconds=5 + i), ["bitcoin"], 0.0, 1.0, "neutral", text=t)
        for i, t in enumerate(texts)
    ]
    produce(s, records)
    result = run_backfill(spark, s, T0.date(), T0.date(), source="kafka", model=str(model), client=r)
    expected = SentimentRuntime.load(str(model), s).score(texts)
    assert result.model_version == expected[0].model_version
    rows = [x for x in lake_rows(spark, s) if x["window"] == "1m" and x["source"] == "all"]
    assert len(rows) == 1 and rows[0]["volume"] == 4
    mean = sum(e.score or 0.0 for e in expected) / 4
    # int8 dynamic quantization depends slightly on which texts share a batch.
    assert rows[0]["mean_score"] == pytest.approx(mean, abs=2e-3)
    assert rows[0]["mean_score"] != 0.0


def test_the_warm_up_runs_the_backfill_query_and_leaves_nothing(spark: Any, tmp_path: Any) -> None:
    from spark_jobs.backfill import warm_up

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert warm_up(spark, scratch, events=4_000) > 0
    assert list(scratch.iterdir()) == []
