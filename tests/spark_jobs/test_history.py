"""History on first start: the bundle build (unit) and the seed against real Redis and Spark."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings, get_settings, load_settings
from schemas.redis_keys import RedisKeys
from scoring.coins import CoinCatalog
from spark_jobs import build_history
from spark_jobs.history import (
    DEFAULT_BUNDLE,
    HistoryError,
    load_bundle,
    marker_path,
    next_midnight,
    price_records,
    seed_history,
)

# -- the bundle (unit) ----------------------------------------------------------------------------


@pytest.mark.unit
def test_committed_bundle_is_the_build_output_and_small() -> None:
    """The committed file is exactly what the build makes of the committed replay texts."""
    with build_history.DEFAULT_TEXTS.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    rebuilt = build_history.encode(build_history.build_lines(rows))
    assert DEFAULT_BUNDLE.read_bytes() == rebuilt, "run `python -m spark_jobs.build_history`"
    assert DEFAULT_BUNDLE.stat().st_size < 3_000_000


@pytest.mark.unit
def test_build_is_deterministic_and_seed_dependent() -> None:
    rows = [
        {"dataset": "d", "row": str(i), "kind": "news", "text": f"Bitcoin and Ethereum note {i}"}
        for i in range(30)
    ]
    one = build_history.encode(build_history.build_lines(rows, days=2, seed=5))
    assert one == build_history.encode(build_history.build_lines(rows, days=2, seed=5))
    assert one != build_history.encode(build_history.build_lines(rows, days=2, seed=6))


@pytest.mark.unit
def test_every_text_tags_a_coin_and_non_crypto_rows_are_dropped() -> None:
    rows = [
        {"dataset": "d", "row": "1", "kind": "news", "text": "Bitcoin ETF inflows https://t.co/x"},
        {"dataset": "d", "row": "2", "kind": "news", "text": "Kaya Holdings reports Q3 results"},
        {"dataset": "d", "row": "3", "kind": "post", "text": "   "},
    ]
    pool = build_history.text_pool(rows)
    assert [(p["row"], p["coins"], p["text"]) for p in pool] == [("1", ["bitcoin"], "Bitcoin ETF inflows")]
    bundle = load_bundle(DEFAULT_BUNDLE)
    catalog = CoinCatalog.default()
    for text in bundle.texts:
        assert text["coins"] and catalog.tag(text["text"]) == text["coins"], text


@pytest.mark.unit
def test_events_span_the_bundle_with_a_daily_rhythm() -> None:
    bundle = load_bundle(DEFAULT_BUNDLE)
    days = int(bundle.meta["days"])
    assert days >= 8  # 7 whole days lie before any moment of the last one
    offsets = bundle.offsets
    assert offsets.min() > 0 and offsets.max() <= days * 86_400
    assert list(offsets) == sorted(offsets, reverse=True)  # oldest first
    assert len(offsets) == bundle.meta["events"]
    hours = ((days * 86_400 - offsets) % 86_400) // 3600
    busy, quiet = ((hours >= 12) & (hours < 18)).sum(), (hours < 6).sum()
    assert busy > 1.5 * quiet, (busy, quiet)
    # bitcoin is mentioned in (nearly) every five-minute window of the last seven days
    windows = {
        int(o) // 300
        for o, i in zip(offsets, bundle.text_index, strict=True)
        if o <= 7 * 86_400 and "bitcoin" in bundle.texts[int(i)]["coins"]
    }
    assert len(windows) > 0.9 * 7 * 288


@pytest.mark.unit
def test_price_walks_end_where_the_live_replay_starts() -> None:
    from schemas.market import REFERENCE_PRICES as START_PRICES

    bundle = load_bundle(DEFAULT_BUNDLE)
    assert set(bundle.prices) == set(START_PRICES)
    for coin, (first, step, values) in bundle.prices.items():
        assert first == int(bundle.meta["days"]) * 86_400 and step == build_history.PRICE_STEP_S
        assert len(values) == first // step + 1 and min(values) > 0
        assert math.isclose(values[-1], START_PRICES[coin], rel_tol=1e-5)


@pytest.mark.unit
def test_placed_prices_end_at_the_level_at_any_end_time() -> None:
    bundle = load_bundle(DEFAULT_BUNDLE)
    end = datetime(2026, 3, 4, 13, 37, tzinfo=UTC)
    anchor = next_midnight(end)
    assert anchor == datetime(2026, 3, 5, tzinfo=UTC)
    assert next_midnight(anchor) == anchor
    ticks = price_records(bundle, ["bitcoin", "unknown-coin"], "usd", anchor, end - timedelta(days=1), end)
    assert {t.coin for t in ticks} == {"bitcoin"}
    step = timedelta(seconds=build_history.PRICE_STEP_S)
    assert len(ticks) == 576  # one day of 150 s steps (13:37 is off the grid)
    assert end - timedelta(days=1) <= ticks[0].event_time < end - timedelta(days=1) + step
    assert end - step < ticks[-1].event_time <= end
    assert all(b.event_time - a.event_time == step for a, b in itertools.pairwise(ticks))
    assert ticks[-1].price == pytest.approx(60_000.0, rel=1e-6)


@pytest.mark.unit
def test_a_broken_bundle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no history bundle"):
        load_bundle(tmp_path / "missing.jsonl.gz")
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(HistoryError, match="not gzipped JSON lines"):
        load_bundle(tmp_path / "bad.gz")
    (tmp_path / "other.gz").write_bytes(build_history.encode([{"t": "meta", "format": "other"}]))
    with pytest.raises(HistoryError, match="no meta line"):
        load_bundle(tmp_path / "other.gz")


# -- the seed against real Redis and Spark (integration) ------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_seed_backfills_windows_prices_and_is_idempotent(
    spark: Any, spark_settings: Settings, redis_client: Any, tiny_model_dir: Path
) -> None:
    s = load_settings(
        home=spark_settings.home,
        kafka=spark_settings.kafka.model_dump(),
        redis=spark_settings.redis.model_dump(),
        spark={**spark_settings.spark.model_dump(), "history_days": 1},
        model={**spark_settings.model.model_dump(), "uri": str(tiny_model_dir)},
    )
    keys = RedisKeys(s.redis.key_prefix)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    messages: list[str] = []

    result = seed_history(s, end=end, spark=spark, client=redis_client, progress=messages.append)

    assert result.status == "seeded" and result.end == end and result.start == end - timedelta(days=1)
    assert result.posts > 1000 and 12 * 576 <= result.prices <= 12 * 577 and result.rejected_texts == 0
    assert any("backfill" in m for m in messages)
    # the lake holds the events in the archive's layout (beside its log), and the backfill read them all
    seeded = s.home / "lake" / "seeded-events"
    files = sorted(p.relative_to(seeded) for p in seeded.rglob("*.parquet"))
    assert {str(p).split("/")[0] for p in files} == {"kind=post", "kind=price"}
    events = spark.read.parquet(str(seeded))
    # typed columns, the whole record (no JSON string to parse)
    assert {"source_id", "event_time", "text", "coins", "score", "price", "kind", "date"} <= set(
        events.columns
    )
    assert "value" not in events.columns
    assert events.count() == result.posts + result.prices
    # at least 48 five-minute windows of bitcoin, with z-scores, up to the end
    ts = redis_client.zrangebyscore(keys.trend_ts("5m", "bitcoin"), "-inf", "+inf", withscores=True)
    assert len(ts) >= 48
    assert max(score for _, score in ts) >= (end - timedelta(minutes=10)).timestamp()
    latest = [json.loads(member) for member, _ in ts[-48:]]
    assert all(w["volume"] > 0 and w["price_close"] is not None for w in latest)
    assert any(w["volume_zscore"] not in (None, 0.0) for w in latest)
    assert any(w["sentiment_return_corr"] is not None for w in latest)
    assert redis_client.zcard(keys.trending("1h")) > 0
    # a live price for every tracked coin, at the end of the history
    price = json.loads(redis_client.get(keys.price_latest("bitcoin")))
    assert price["price"] == pytest.approx(60_000.0)
    assert end - timedelta(seconds=150) < datetime.fromisoformat(price["event_time"]) <= end
    assert all(redis_client.exists(keys.price_latest(c)) for c in s.producer.coins)
    assert redis_client.llen(keys.posts_latest()) == 50
    marker = json.loads(marker_path(s).read_text("utf-8"))
    assert marker["bundle_sha256"] == result.bundle_sha256 and marker["check_coin"] == "bitcoin"

    # second run: a no-op that changes nothing
    before = redis_client.zrange(keys.trend_ts("5m", "bitcoin"), 0, -1)
    again = seed_history(s, spark=spark, client=redis_client)
    assert again.status == "already"
    assert redis_client.zrange(keys.trend_ts("5m", "bitcoin"), 0, -1) == before
    assert sorted(p.relative_to(seeded) for p in seeded.rglob("*.parquet")) == files

    # a home that ran before (its archive started, never seeded) has history of its own
    ran = s.model_copy(update={"home": s.home / "ran-before"})
    (ran.home / "lake" / "events" / "_spark_metadata").mkdir(parents=True)
    assert seed_history(ran, spark=spark, client=redis_client).status == "skipped"
    with pytest.raises(HistoryError, match="own history"):
        seed_history(ran, force=True, spark=spark, client=redis_client)


@pytest.mark.unit
def test_command_is_registered_and_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from spark_jobs.cli import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Root."""

    register(app)
    runner = CliRunner()
    assert "--force" in runner.invoke(app, ["spark", "history", "--help"]).output
    monkeypatch.setenv("CRYPTOPULSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CRYPTOPULSE_SPARK__HISTORY_FILE", str(tmp_path / "none.jsonl.gz"))
    # the command reads the cached process settings: make it see this test's home, never the default one
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["spark", "history"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "no history bundle" in result.output and "build_history" in result.output
