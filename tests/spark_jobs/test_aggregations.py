"""Pure aggregation logic on small frames: hand-computed values, stream/batch path equality."""

from __future__ import annotations

import json
import urllib.request
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from schemas.events import WindowSize
from spark_jobs.aggregations import (
    LEAD_LAG_MIN_PAIRS,
    MEASURES,
    PRICE_SOURCE,
    TOTAL_COIN,
    WINDOW_SPECS,
    add_cross_window_features,
    aggregate_windows,
    assign_windows,
    build_trend_frame,
    components_frame,
    components_json,
    history_frame,
    measure_rows,
    minute_buckets,
    to_trend_windows,
    window_rollup,
)
from spark_jobs.inputs import parse_events
from spark_jobs.metrics import SparkMetrics
from spark_jobs.sink_redis import rows_to_records
from tests.spark_jobs.conftest import T0, post, tick

pytestmark = pytest.mark.unit

MS = int(T0.timestamp() * 1000)


def comp(coin: str, source: str, n: int, **kw: Any) -> dict[str, Any]:
    base = {
        "window": "1m",
        "window_start": MS,
        "window_end": MS + 60_000,
        "coin": coin,
        "source": source,
        "n": n,
        "s_score": 0.0,
        "s_conf": 0.0,
        "s_wscore": 0.0,
        "n_pos": 0,
        "n_neu": 0,
        "n_neg": 0,
        "last_event": MS + 1000,
        "last_ingest": MS + 2000,
        "p_open": None,
        "t_open": None,
        "p_close": None,
        "t_close": None,
        "p_high": None,
        "p_low": None,
    }
    base.update(kw)
    return base


def test_build_trend_frame_hand_computed() -> None:
    frame = components_frame(
        [
            comp("bitcoin", "all", 2, s_score=0.3, s_conf=1.4, s_wscore=0.47, n_pos=1, n_neg=1),
            comp("ethereum", "all", 1, s_score=-0.5, s_conf=0.5, s_wscore=-0.25, n_neg=1),
            comp(TOTAL_COIN, "all", 3),
            comp(
                "bitcoin",
                PRICE_SOURCE,
                0,
                p_open=100.0,
                p_close=105.0,
                p_high=110.0,
                p_low=99.0,
                t_open=MS,
                t_close=MS + 50_000,
                last_ingest=MS + 9000,
            ),
        ]
    )
    out = build_trend_frame(frame).set_index("coin")
    btc, eth = out.loc["bitcoin"], out.loc["ethereum"]
    assert btc["volume"] == 2 and btc["mean_score"] == 0.15
    assert btc["weighted_score"] == pytest.approx(0.47 / 1.4, abs=1e-9)
    assert (btc["positive_share"], btc["neutral_share"], btc["negative_share"]) == (0.5, 0.0, 0.5)
    assert btc["social_dominance"] == pytest.approx(2 / 3, abs=1e-9)
    assert (btc["price_open"], btc["price_high"], btc["price_low"], btc["price_close"]) == (100, 110, 99, 105)
    assert btc["price_return"] == pytest.approx(0.05) and btc["ingest_time"] == MS + 9000
    assert eth["social_dominance"] == pytest.approx(1 / 3, abs=1e-9) and np.isnan(eth["price_return"])
    windows = {w.coin: w for w in to_trend_windows(out.reset_index())}
    assert windows["ethereum"].price_open is None and windows["bitcoin"].window_end == T0 + timedelta(
        minutes=1
    )


def trend_rows(volumes: list[int], scores: list[float], returns: list[float]) -> pd.DataFrame:
    n = len(volumes)
    return pd.DataFrame(
        {
            "window": "1m",
            "coin": "bitcoin",
            "source": "all",
            "window_start": [MS + i * 60_000 for i in range(n)],
            "volume": volumes,
            "weighted_score": scores,
            "price_return": returns,
            "volume_zscore": np.nan,
            "sentiment_return_corr": np.nan,
        }
    )


def test_zscore_and_correlation_against_trailing_windows() -> None:
    rows = trend_rows([1, 3, 5, 11], [0.1, 0.2, 0.3, 0.4], [0.01, 0.02, np.nan, 0.05])
    out = add_cross_window_features(rows, history_frame([]), trailing=3)
    z = out["volume_zscore"].tolist()
    assert np.isnan(z[0]) and np.isnan(z[1])  # fewer than two previous windows
    assert z[2] == pytest.approx(3.0)  # (5 - mean 2) / population std 1
    assert z[3] == pytest.approx((11 - 3) / np.sqrt(8 / 3))
    corr = out["sentiment_return_corr"].tolist()
    assert np.isnan(corr[2]) and np.isnan(corr[3])  # only two complete pairs in each trailing 3
    full = trend_rows([1, 1, 1, 1], [0.1, -0.2, 0.3, 0.5], [0.01, 0.02, -0.01, 0.04])
    out = add_cross_window_features(full, history_frame([]), trailing=3)
    assert np.isnan(out["volume_zscore"].iloc[3])  # no spread
    expected = np.corrcoef([-0.2, 0.3, 0.5], [0.02, -0.01, 0.04])[0, 1]
    assert out["sentiment_return_corr"].iloc[3] == pytest.approx(expected, abs=1e-9)


def test_sentiment_zscore_and_change_against_trailing_windows() -> None:
    rows = trend_rows([5, 5, 5, 5, 5], [0.1, 0.3, 0.2, -0.4, 0.2], [np.nan] * 5)
    out = add_cross_window_features(rows, history_frame([]), trailing=3)
    z, change = out["sentiment_zscore"].tolist(), out["sentiment_change"].tolist()
    assert np.isnan(z[0]) and np.isnan(z[1]) and np.isnan(change[1])  # fewer than two earlier windows
    assert change[2] == pytest.approx(0.0) and z[2] == pytest.approx(0.0)  # 0.2 vs mean(0.1, 0.3)
    prev = np.array([0.1, 0.3, 0.2])
    assert change[3] == pytest.approx(-0.6)
    assert z[3] == pytest.approx(-0.6 / prev.std())
    calm = trend_rows([5, 5, 5, 5], [0.2, 0.2, 0.2, 0.9], [np.nan] * 4)
    out = add_cross_window_features(calm, history_frame([]), trailing=3)
    assert np.isnan(out["sentiment_zscore"].iloc[3])  # no spread: no z-score ...
    assert out["sentiment_change"].iloc[3] == pytest.approx(0.7)  # ... but the change is known


def test_features_do_not_depend_on_how_much_history_is_loaded() -> None:
    rng = np.random.default_rng(3)
    n = 60
    full = trend_rows(list(rng.integers(1, 50, n)), list(rng.uniform(-1, 1, n)), list(rng.normal(0, 0.01, n)))
    everything = add_cross_window_features(full, history_frame([]), trailing=20)
    tail = full.iloc[40:].reset_index(drop=True)
    hist = history_frame(full.iloc[20:40].to_dict("records"))
    partial = add_cross_window_features(tail, hist, trailing=20)
    expected = everything.iloc[40:].reset_index(drop=True)
    assert partial["volume_zscore"].tolist() == expected["volume_zscore"].tolist()
    assert partial["sentiment_return_corr"].tolist() == expected["sentiment_return_corr"].tolist()
    assert partial["sentiment_zscore"].tolist() == expected["sentiment_zscore"].tolist()
    assert partial["lead_lag_windows"].tolist() == expected["lead_lag_windows"].tolist()
    assert partial["lead_lag_corr"].tolist() == expected["lead_lag_corr"].tolist()
    assert partial["lead_lag_corr"].notna().all()


def _events(spark: Any, records: list[Any]) -> Any:
    rows = [("price" if hasattr(r, "price") else "post", r.model_dump_json()) for r in records]
    return parse_events(spark.createDataFrame(rows, "kind string, value string"))


def test_minute_buckets_path_equals_direct_path(spark: Any) -> None:
    records = [
        post(
            i,
            T0 + timedelta(seconds=37 * i),
            ["bitcoin", "solana"][: 1 + i % 2],
            ((i * 7) % 11 - 5) / 5,
            0.3 + (i % 7) / 10,
            ["negative", "neutral", "positive"][i % 3],
            ["reddit", "news"][i % 2],
        )
        for i in range(40)
    ] + [tick("bitcoin", T0 + timedelta(seconds=20 * i), 100 + (i * 13) % 7) for i in range(60)]
    measures = measure_rows(_events(spark, records))
    direct: Any = aggregate_windows(assign_windows(measures)).toPandas()
    bucketed: Any = aggregate_windows(assign_windows(minute_buckets(measures))).toPandas()
    a = build_trend_frame(components_frame(direct.to_dict("records")))
    b = build_trend_frame(components_frame(bucketed.to_dict("records")))
    pd.testing.assert_frame_equal(a, b)
    assert set(a["window"]) == {w.value for w in WINDOW_SPECS}
    one = a[(a["window"] == "1m") & (a["coin"] == "bitcoin") & (a["source"] == "all")].iloc[0]
    assert one["price_open"] == 100 and one["price_close"] == 100 + (2 * 13) % 7


def _sorted_aggregates(frame: Any) -> pd.DataFrame:
    keys = ["window", "window_start", "coin", "source"]
    return frame.toPandas().sort_values(keys).reset_index(drop=True)


def test_window_rollup_equals_every_minute_fanned_out_to_its_windows(spark: Any) -> None:
    """Over a day and a half that crosses two midnights: every window size, dominance totals,
    the ``all`` source and price open/close/high/low come out the same through five-minute
    buckets as from each minute bucket fanned out to all its windows."""
    start = T0 - timedelta(hours=2)
    records = [
        post(
            i,
            start + timedelta(seconds=613 * i + (i * i) % 59),
            [["bitcoin"], ["bitcoin", "solana"], ["solana", "ethereum", "bitcoin"], []][i % 4],
            ((i * 7) % 11 - 5) / 5,
            0.3 + (i % 7) / 10,
            ["negative", "neutral", "positive"][i % 3],
            ["reddit", "news"][i % 2],
        )
        for i in range(160)
    ] + [
        tick(["bitcoin", "solana"][i % 2], start + timedelta(seconds=421 * i), 100 + (i * 13) % 17)
        for i in range(240)
    ]
    minutes = minute_buckets(measure_rows(_events(spark, records)))
    fanned = _sorted_aggregates(aggregate_windows(assign_windows(minutes)))
    rolled = _sorted_aggregates(window_rollup(minutes))
    pd.testing.assert_frame_equal(rolled[fanned.columns], fanned)
    assert set(fanned["window"]) == {w.value for w in WINDOW_SPECS}
    assert fanned["window_start"].nunique() > 300 and (fanned["coin"] == TOTAL_COIN).any()
    assert (fanned["source"] == PRICE_SOURCE).any() and (fanned["source"] == "all").any()
    for sizes in (["1m"], ["1h_5m", "1d"], ["5m", "1m"]):
        chosen = [WindowSize(size) for size in sizes]
        subset = _sorted_aggregates(aggregate_windows(assign_windows(minutes, chosen)))
        rolled = _sorted_aggregates(window_rollup(minutes, chosen))
        pd.testing.assert_frame_equal(rolled[subset.columns], subset)


def test_unparseable_and_invalid_records_are_dropped(spark: Any) -> None:
    good = json.loads(post(1, T0, ["bitcoin"], 0.5, 1.0, "positive").model_dump_json())
    bad = [
        "not json",
        json.dumps({"source_id": "x"}),
        json.dumps({**good, "score": 3.0}),
        json.dumps({**good, "source": "twitter"}),
        json.dumps({**good, "confidence": -1}),
    ]
    rows = [("post", v) for v in bad] + [
        ("price", json.dumps({**good, "coin": "BTC!", "price": 1.0})),
        ("price", post(1, T0, [], 0, 1, "neutral").model_dump_json()),
        ("post", json.dumps({**good, "coins": ["bitcoin", "Not A Coin"]})),
    ]
    events = parse_events(spark.createDataFrame(rows, "kind string, value string"))
    assert events.count() == 1
    assert [(r["coin"], r["n"]) for r in measure_rows(events).where("source = 'all'").collect()] == [
        ("bitcoin", 1),
        (TOTAL_COIN, 1),
    ]


def test_metrics_endpoint() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics = SparkMetrics()
    metrics.serve(port)
    metrics.batches.inc()

    progress = SimpleNamespace(
        name="trends",
        inputRowsPerSecond=12.5,
        processedRowsPerSecond=40.0,
        numInputRows=7,
        eventTime={"watermark": "2026-01-05T10:00:00.000Z"},
    )
    metrics.on_progress(progress)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "cryptopulse_spark_batches_total 1.0" in body
    assert 'cryptopulse_spark_input_rows_per_second{query="trends"} 12.5' in body


def _lagged_series(n: int, lag: int, seed: int, noise: float) -> tuple[list[float], list[float]]:
    """Sentiment as noise; the return ``lag`` windows later follows it (plus ``noise``)."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-0.8, 0.8, n)
    returns = np.full(n, np.nan)
    returns[lag:] = 0.02 * scores[: n - lag] + rng.normal(0, noise, n - lag)
    returns[:lag] = rng.normal(0, 0.01, lag)
    return [round(float(s), 6) for s in scores], [round(float(r), 8) for r in returns]


def _as_windows(out: pd.DataFrame) -> list[Any]:
    """Feature rows of :func:`trend_rows` completed into TrendWindow models."""
    return to_trend_windows(
        out.assign(
            mean_score=0.0,
            positive_share=0.0,
            neutral_share=1.0,
            negative_share=0.0,
            social_dominance=1.0,
            window_end=out["window_start"] + 60_000,
            price_open=np.nan,
            price_high=np.nan,
            price_low=np.nan,
            price_close=np.nan,
            event_time=out["window_start"],
            ingest_time=out["window_start"],
        )
    )


def test_lead_lag_finds_sentiment_leading_price_by_two_windows() -> None:
    scores, returns = _lagged_series(40, 2, seed=7, noise=0.002)
    out = add_cross_window_features(trend_rows([5] * 40, scores, returns), history_frame([]), 20, max_lag=6)
    last = out.iloc[-1]
    assert last["lead_lag_windows"] == 2
    assert last["lead_lag_corr"] > 0.9
    # The same-window correlation misses it: sentiment and return of one window are unrelated.
    assert abs(last["sentiment_return_corr"]) < 0.5
    window = _as_windows(out.iloc[-1:])[0]
    assert window.lead_lag_windows == 2 and window.lead_lag_corr == pytest.approx(last["lead_lag_corr"])


def test_lead_lag_sign_when_price_moves_first() -> None:
    rng = np.random.default_rng(11)
    returns = rng.normal(0, 0.01, 40)
    scores = np.zeros(40)
    scores[3:] = np.clip(returns[:-3] * 60, -1, 1)  # sentiment follows price by 3 windows
    out = add_cross_window_features(
        trend_rows([5] * 40, list(scores), list(returns)), history_frame([]), 20, max_lag=6
    )
    assert out["lead_lag_windows"].iloc[-1] == -3 and out["lead_lag_corr"].iloc[-1] > 0.9


def test_lead_lag_on_noise_is_weak() -> None:
    rng = np.random.default_rng(5)
    n = 200
    rows = trend_rows([5] * n, list(rng.uniform(-1, 1, n)), list(rng.normal(0, 0.01, n)))
    out = add_cross_window_features(rows, history_frame([]), trailing=150, max_lag=6)
    last = out.iloc[-1]
    assert -6 <= last["lead_lag_windows"] <= 6
    assert abs(last["lead_lag_corr"]) < 0.3


def test_lead_lag_needs_history() -> None:
    scores, returns = _lagged_series(12, 2, seed=1, noise=0.0)
    out = add_cross_window_features(trend_rows([5] * 12, scores, returns), history_frame([]), 20, max_lag=6)
    # Fewer than LEAD_LAG_MIN_PAIRS complete pairs at every lag until the 8th window (k = 0).
    assert out["lead_lag_windows"].iloc[:7].isna().all() and out["lead_lag_corr"].iloc[:7].isna().all()
    assert out["lead_lag_windows"].iloc[-1] == 2  # 10 pairs at k=2 by the 12th window
    no_prices = trend_rows([5] * 30, (scores * 3)[:30], [np.nan] * 30)
    out = add_cross_window_features(no_prices, history_frame([]), 20, max_lag=6)
    assert out["lead_lag_windows"].isna().all()
    windows = _as_windows(out)
    assert windows[-1].lead_lag_windows is None and windows[-1].lead_lag_corr is None


def test_lead_lag_keeps_series_apart() -> None:
    """All series are estimated in one pass; none may borrow windows of the series before it."""
    scores, returns = _lagged_series(30, 2, seed=9, noise=0.001)
    first = trend_rows([5] * 30, scores, returns)
    second = trend_rows([5] * 10, scores[:10], returns[:10]).assign(coin="ethereum")
    out = add_cross_window_features(pd.concat([first, second], ignore_index=True), history_frame([]), 20)
    by_coin = {coin: group for coin, group in out.groupby("coin")}
    assert by_coin["bitcoin"]["lead_lag_windows"].iloc[-1] == 2
    # Ten windows: at most 8 pairs at lag 2, none at lags past 2 -- still an estimate of its own.
    alone = add_cross_window_features(second, history_frame([]), 20)
    assert by_coin["ethereum"]["lead_lag_windows"].tolist() == pytest.approx(
        alone["lead_lag_windows"].tolist(), nan_ok=True
    )
    assert by_coin["ethereum"]["lead_lag_corr"].tolist() == pytest.approx(
        alone["lead_lag_corr"].tolist(), nan_ok=True
    )
    assert by_coin["ethereum"]["lead_lag_windows"].iloc[:7].isna().all()


def _lead_lag_reference(score: np.ndarray, ret: np.ndarray, size: int, max_lag: int) -> tuple[float, float]:
    """The lead-lag of the last row of one series, straight from its definition (np.corrcoef
    of the pairs inside the trailing windows; ties to the smaller |k|, then sentiment leading)."""
    n = len(score)
    best: tuple[float, float] = (np.nan, np.nan)
    for k in [0] + [k for d in range(1, max_lag + 1) for k in (d, -d)]:
        ends = range(max(n - (size - abs(k)), abs(k)), n)
        pairs = [(score[e - max(k, 0)], ret[e - max(-k, 0)]) for e in ends]
        pairs = [(x, y) for x, y in pairs if not (np.isnan(x) or np.isnan(y))]
        if len(pairs) < LEAD_LAG_MIN_PAIRS or size - abs(k) < LEAD_LAG_MIN_PAIRS:
            continue
        xs, ys = np.array(pairs).T
        if np.sum((xs - xs.mean()) ** 2) <= 1e-18 or np.sum((ys - ys.mean()) ** 2) <= 1e-18:
            continue
        corr = float(np.corrcoef(xs, ys)[0, 1])
        if np.isnan(best[1]) or abs(round(corr, 9)) > abs(best[1]):
            best = (float(k), round(corr, 9))
    return best


def test_lead_lag_matches_its_definition_on_gappy_series() -> None:
    """The vectorized moments (one pass over masked trailing views) against a per-row
    reference, on series with missing scores and returns, several series back to back."""
    rng = np.random.default_rng(23)
    frames = []
    for coin, length in (("bitcoin", 45), ("ethereum", 30), ("solana", 9)):
        clean_scores, clean_returns = _lagged_series(length, 3, seed=length, noise=0.004)
        scores = np.where(rng.random(length) < 0.15, np.nan, clean_scores)
        returns = np.where(rng.random(length) < 0.2, np.nan, clean_returns)
        frames.append(trend_rows([5] * length, list(scores), list(returns)).assign(coin=coin))
    rows = pd.concat(frames, ignore_index=True)
    out = add_cross_window_features(rows, history_frame([]), 20, max_lag=6)
    checked = 0
    for _, series in out.groupby("coin", sort=False):
        score = series["weighted_score"].to_numpy(dtype="float64")
        ret = series["price_return"].to_numpy(dtype="float64")
        for end in range(1, len(series) + 1):
            lag, corr = _lead_lag_reference(score[:end], ret[:end], 20, 6)
            got = series.iloc[end - 1]
            if np.isnan(lag):
                assert np.isnan(got["lead_lag_windows"]) and np.isnan(got["lead_lag_corr"])
                continue
            assert got["lead_lag_windows"] == lag
            assert got["lead_lag_corr"] == pytest.approx(corr, abs=2e-9)
            checked += 1
    assert checked > 40


def test_lead_lag_of_a_constant_sentiment_is_unknown() -> None:
    """A constant side has no spread: one-pass rounding noise must not pass for one."""
    _, returns = _lagged_series(30, 2, seed=4, noise=0.001)
    out = add_cross_window_features(trend_rows([5] * 30, [0.123456789] * 30, returns), history_frame([]), 20)
    assert out["lead_lag_windows"].isna().all() and out["lead_lag_corr"].isna().all()


def test_trend_windows_take_missing_values_and_older_lake_columns_as_none() -> None:
    scores, returns = _lagged_series(3, 1, seed=3, noise=0.0)
    rows = add_cross_window_features(trend_rows([5] * 3, scores, returns), history_frame([]), 20)
    older = rows.drop(columns=["lead_lag_windows", "lead_lag_corr", "sentiment_zscore", "sentiment_change"])
    for window in _as_windows(older):
        assert window.lead_lag_windows is None and window.sentiment_zscore is None
        assert window.price_open is None and window.volume_zscore is None  # NaN in the frame
    window = _as_windows(rows)[-1]
    assert window.source_id == f"bitcoin:1m:all:{window.window_start:%Y-%m-%dT%H:%M:%S}.000Z"
    assert window.volume == 5 and window.weighted_score == pytest.approx(rows["weighted_score"].iloc[-1])


def test_components_json_is_the_same_for_stream_rows_and_the_backfills_arrow_frame(spark: Any) -> None:
    """The stream encodes the Spark rows of a micro-batch, the backfill an Arrow-made frame of
    the same aggregates: the same bytes, so either can replace what the other wrote."""
    records = [
        post(
            i,
            T0 + timedelta(seconds=13 * i),
            ["bitcoin", "ethereum"][: 1 + i % 2],
            (i % 9 - 4) / 4.5,
            0.1 + (i % 5) / 7,
            ["negative", "neutral", "positive"][i % 3],
            ["reddit", "news"][i % 2],
        )
        for i in range(50)
    ] + [tick("bitcoin", T0 + timedelta(seconds=7 * i), 100 + i / 3) for i in range(40)]
    aggregates = aggregate_windows(assign_windows(measure_rows(_events(spark, records))))
    stream_side = components_json(components_frame(rows_to_records(aggregates.collect())))
    backfill_side = components_frame(aggregates.toArrow().to_pandas())
    assert sorted(components_json(backfill_side)) == sorted(stream_side)
    decoded = [json.loads(p) for p in stream_side]
    assert all(list(d) == list(MEASURES) for d in decoded)
    assert any(d["p_open"] is None for d in decoded)  # posts-only rows keep nulls
    assert any(d["p_open"] is not None for d in decoded)


def test_components_json_rounds_sums_and_reads_back_as_the_same_numbers() -> None:
    one_order, other_order = (0.1 + 0.2) + 0.3, 0.1 + (0.2 + 0.3)
    assert one_order != other_order  # 0.6000000000000001 and 0.6
    row = comp("bitcoin", "reddit", 3, s_score=one_order, s_conf=100.0, s_wscore=1e-05, p_open=1e22)
    [text] = components_json(components_frame([row]))
    assert components_json(components_frame([{**row, "s_score": other_order}])) == [text]
    decoded = json.loads(text)
    assert decoded["s_score"] == 0.6 and decoded["s_conf"] == 100.0 and decoded["s_wscore"] == 1e-05
    assert decoded["p_open"] == 1e22 and decoded["p_close"] is None and decoded["n"] == 3
    assert decoded["last_event"] == MS + 1000 and isinstance(decoded["last_event"], int)
    assert components_frame([{**row, **decoded}]).equals(components_frame([{**row, "s_score": 0.6}]))
    # A residue that rounds to -0.0 is written as 0, as a sum that came out +0.0 is.
    assert components_json(components_frame([{**row, "s_conf": -1e-15}])) == components_json(
        components_frame([{**row, "s_conf": 0.0}])
    )
    assert components_json(components_frame([])) == []


def test_bad_coins_are_dropped_from_a_post_that_keeps_its_good_ones(spark: Any) -> None:
    good = json.loads(post(1, T0, ["bitcoin"], 0.5, 1.0, "positive").model_dump_json())
    rows = [
        ("post", json.dumps({**good, "source_id": "t3_a", "coins": ["bitcoin", "ethereum", "bitcoin"]})),
        ("post", json.dumps({**good, "source_id": "t3_b", "coins": ["__total__", "solana", "Bad,Coin"]})),
        ("post", json.dumps({**good, "source_id": "t3_c", "coins": []})),
    ]
    measured = measure_rows(parse_events(spark.createDataFrame(rows, "kind string, value string")))
    got = sorted((r["coin"], r["n"]) for r in measured.where("source = 'all'").collect())
    assert got == sorted([("bitcoin", 1), ("ethereum", 1), ("solana", 1), (TOTAL_COIN, 1), (TOTAL_COIN, 2)])
