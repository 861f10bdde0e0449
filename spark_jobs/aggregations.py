"""Pure trend-window logic: Spark for the per-event work, pandas for the per-window finish.

Every function here takes and returns frames (no Kafka, Redis or files): reading and
parsing the input topics is :mod:`spark_jobs.inputs`, writing is the jobs' sinks.

The split is deliberate. Everything proportional to the number of *events* (explode
coins and sources, assign event-time windows, sum) runs in Spark and is shared
verbatim by the streaming job and the backfill. What is proportional to
the number of *windows* (shares, dominance, prices, z-scores, correlations) is finished
in pandas by :func:`build_trend_frame` and :func:`add_cross_window_features`, the same
functions for both jobs, so a backfill reproduces what streaming wrote bit for bit.

Aggregates are kept as *sums* (count, sum of scores, ...) rather than means so they
can be merged: the backfill first sums events into one-minute buckets and then rolls
the buckets up into every window size with the very same aggregation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.settings import SparkSettings
from schemas.events import TrendWindow, WindowSize

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

TOTAL_COIN = "__total__"
"""Pseudo coin whose ``n`` counts every mention of a (window, source): dominance denominator."""
PRICE_SOURCE = "__price__"
"""Pseudo source of the price rows (OHLC of one coin in one window)."""
ALL_SOURCES = "all"
COIN_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
"""Same as ``schemas.events.CoinId``."""
COIN_LIST_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}(,[a-z0-9][a-z0-9-]{0,63})*$"
"""A comma-joined list of valid coin ids (a coin id holds no comma)."""

WINDOW_SPECS: dict[WindowSize, tuple[str, str | None]] = {
    WindowSize.ONE_MINUTE: ("1 minute", None),
    WindowSize.FIVE_MINUTES: ("5 minutes", None),
    WindowSize.ONE_HOUR: ("1 hour", None),
    WindowSize.ONE_DAY: ("1 day", None),
    WindowSize.ONE_HOUR_SLIDING: ("1 hour", "5 minutes"),
}
"""Spark ``window()`` duration and slide of each window size."""

MEASURES = (
    "n",
    "s_score",
    "s_conf",
    "s_wscore",
    "n_pos",
    "n_neu",
    "n_neg",
    "last_event",
    "last_ingest",
    "p_open",
    "t_open",
    "p_close",
    "t_close",
    "p_high",
    "p_low",
)
"""Mergeable per-group measures; times are epoch milliseconds after :func:`aggregate_windows`."""

INTEGER_MEASURES = ("n", "n_pos", "n_neu", "n_neg", "last_event", "last_ingest", "t_open", "t_close")
KEY_COLUMNS = ("window", "window_start", "window_end", "coin", "source")
DIGITS = 9
"""Derived floats are rounded so that summation order (stream vs backfill) cannot show."""

DEFAULT_LEAD_LAG_MAX_WINDOWS: int = SparkSettings.model_fields["lead_lag_max_windows"].default
"""Largest lead/lag searched when the caller passes none (the setting's default)."""

# -- Spark: per-event work ---------------------------------------------------------------------


def _ms(column: Column) -> Column:
    from pyspark.sql import functions as F

    return F.unix_millis(column)


def measure_rows(events: DataFrame) -> DataFrame:
    """Typed events -> one row per (event, coin, source) mention, per post total, per price tick.

    Each post counts once for its own source and once for ``all``; a post mentioning
    several coins is one mention of each. ``TOTAL_COIN`` rows carry the number of
    mentions, the denominator of social dominance. Built with explodes only (no unions)
    so a micro-batch stays a handful of tasks.
    """
    from pyspark.sql import functions as F

    is_post = F.col("kind") == "post"
    distinct = F.array_distinct(F.coalesce(F.col("coins"), F.array().cast("array<string>")))
    # Whole-stage code generation cannot compile a lambda (``filter``), so the per-coin check
    # runs only for the rare post whose joined coin list fails one compiled regex.
    all_valid = (F.size(distinct) == 0) | F.concat_ws(",", distinct).rlike(COIN_LIST_PATTERN)
    coins = F.when(all_valid, distinct).otherwise(F.filter(distinct, lambda c: c.rlike(COIN_PATTERN)))
    checked = events.select(
        "kind",
        "event_time",
        "ingest_time",
        "score",
        F.coalesce(F.col("confidence"), F.lit(0.0)).alias("confidence"),
        "label",
        "price",
        "source",
        "coin",
        F.when(is_post, coins).alias("_coins"),
    )
    exploded = checked.select(
        "kind",
        "event_time",
        "ingest_time",
        "score",
        "confidence",
        "label",
        "price",
        F.size("_coins").alias("_mentions"),
        F.explode(
            F.when(is_post, F.array(F.col("source"), F.lit(ALL_SOURCES))).otherwise(
                F.array(F.lit(PRICE_SOURCE))
            )
        ).alias("source"),
        F.explode(
            F.when(is_post, F.concat(F.col("_coins"), F.array(F.lit(TOTAL_COIN)))).otherwise(
                F.array(F.col("coin"))
            )
        ).alias("coin"),
    )
    total = F.col("coin") == TOTAL_COIN
    n = F.when(is_post, F.when(total, F.col("_mentions")).otherwise(1)).otherwise(0).cast("bigint")
    exploded = exploded.withColumn("n", n).where((F.col("n") > 0) | ~is_post)
    mention = is_post & ~total
    tick = F.col("kind") == "price"
    zero = F.lit(0.0)

    def count_if(cond: Column) -> Column:
        return F.when(cond, 1).otherwise(0).cast("long")

    def price_or_null(col: str) -> Column:
        return F.when(tick, F.col(col))

    return exploded.select(
        "event_time",
        "coin",
        "source",
        "n",
        F.when(mention, F.col("score")).otherwise(zero).alias("s_score"),
        F.when(mention, F.col("confidence")).otherwise(zero).alias("s_conf"),
        F.when(mention, F.col("confidence") * F.col("score")).otherwise(zero).alias("s_wscore"),
        count_if(mention & (F.col("label") == "positive")).alias("n_pos"),
        count_if(mention & (F.col("label") == "neutral")).alias("n_neu"),
        count_if(mention & (F.col("label") == "negative")).alias("n_neg"),
        F.col("event_time").alias("last_event"),
        F.col("ingest_time").alias("last_ingest"),
        price_or_null("price").cast("double").alias("p_open"),
        price_or_null("event_time").alias("t_open"),
        price_or_null("price").cast("double").alias("p_close"),
        price_or_null("event_time").alias("t_close"),
        price_or_null("price").cast("double").alias("p_high"),
        price_or_null("price").cast("double").alias("p_low"),
    )


def _sums() -> list[Column]:
    from pyspark.sql import functions as F

    return [
        F.sum("n").alias("n"),
        F.sum("s_score").alias("s_score"),
        F.sum("s_conf").alias("s_conf"),
        F.sum("s_wscore").alias("s_wscore"),
        F.sum("n_pos").alias("n_pos"),
        F.sum("n_neu").alias("n_neu"),
        F.sum("n_neg").alias("n_neg"),
        F.max("last_event").alias("last_event"),
        F.max("last_ingest").alias("last_ingest"),
        F.min_by("p_open", "t_open").alias("p_open"),
        F.min("t_open").alias("t_open"),
        F.max_by("p_close", "t_close").alias("p_close"),
        F.max("t_close").alias("t_close"),
        F.max("p_high").alias("p_high"),
        F.min("p_low").alias("p_low"),
    ]


def minute_buckets(measures: DataFrame) -> DataFrame:
    """Batch-only pre-aggregation into one-minute buckets (every window size is a union of them)."""
    from pyspark.sql import functions as F

    return measures.groupBy(
        F.window("event_time", "1 minute").start.alias("event_time"), "coin", "source"
    ).agg(*_sums())


WATERMARK_DELAY_KEY = "spark.watermarkDelayMs"
"""Column metadata Spark's stateful operators read to find the event-time key (see below)."""


def _window_starts(size: WindowSize) -> list[tuple[int, int]]:
    """(offset of the window start before the slide boundary, length) in microseconds."""
    duration, slide = WINDOW_SPECS[size]
    length = _micros(duration)
    step = _micros(slide) if slide else length
    return [(k * step, length) for k in range(length // step)]


def _micros(text: str) -> int:
    amount, unit = text.split()
    seconds = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}[
        unit.rstrip("s") if unit != "s" else "second"
    ]
    return int(amount) * seconds * 1_000_000


def interval_ms(text: str) -> int:
    """``"10 minutes"`` -> 600000 (the interval strings settings use for watermark/trigger)."""
    return _micros(text) // 1000


def assign_windows(
    measures: DataFrame,
    sizes: Iterable[WindowSize] = tuple(WINDOW_SPECS),
    *,
    watermark_delay_ms: int | None = None,
) -> DataFrame:
    """One copy of each row per window it falls in (1 per tumbling size, 12 for ``1h_5m``).

    Windows are epoch-aligned like Spark's ``window()``. All sizes come from one explode
    instead of a union of ``window()`` calls, which kept a micro-batch at dozens of
    tasks. In streaming, ``watermark_delay_ms`` tags the window struct ``w`` with the
    watermark metadata that ``window()`` would have propagated, so the aggregation drops
    rows for windows whose end is behind the watermark and evicts finished windows.
    """
    from pyspark.sql import functions as F

    exploded = measures.select(F.explode(F.array(*_window_entries(sizes))).alias("_w"), *measures.columns)
    return _with_window_columns(exploded, measures.columns, watermark_delay_ms)


def _window_entries(sizes: Iterable[WindowSize]) -> list[Column]:
    """One ``(window, start, end)`` struct per window of ``sizes`` that holds ``event_time``."""
    from pyspark.sql import functions as F

    us = F.unix_micros(F.col("event_time"))
    entries = []
    for size in sizes:
        size = WindowSize(size)
        step = _micros(WINDOW_SPECS[size][1] or WINDOW_SPECS[size][0])
        base = us - F.pmod(us, F.lit(step))
        for back, length in _window_starts(size):
            start = base - F.lit(back)
            entries.append(
                F.struct(
                    F.lit(size.value).alias("window"),
                    F.timestamp_micros(start).alias("start"),
                    F.timestamp_micros(start + F.lit(length)).alias("end"),
                )
            )
    return entries


def _with_window_columns(
    exploded: DataFrame, columns: list[str], watermark_delay_ms: int | None
) -> DataFrame:
    """The exploded ``_w`` struct -> the window struct ``w`` and the ``window`` size column."""
    from pyspark.sql import functions as F

    w = F.struct(F.col("_w.start").alias("start"), F.col("_w.end").alias("end"))
    w = (
        w.alias("w", metadata={WATERMARK_DELAY_KEY: watermark_delay_ms})
        if watermark_delay_ms is not None
        else w.alias("w")
    )
    return exploded.select(w, F.col("_w.window").alias("window"), *columns)


ROLLUP_BUCKET = "5 minutes"
"""The coarser bucket :func:`window_rollup` builds the longer windows from."""


def window_rollup(minutes: DataFrame, sizes: Iterable[WindowSize] = tuple(WINDOW_SPECS)) -> DataFrame:
    """Batch: one-minute buckets -> the aggregates of every window (``aggregate_windows``'s rows).

    The same rows as ``aggregate_windows(assign_windows(minutes, sizes))`` at a third of the
    work: one aggregation turns each minute bucket into itself and its five-minute bucket,
    and a second one fans each five-minute bucket (a fifth as many rows) out to the windows
    made of whole five-minute buckets (5m, 1h, 1d, and the 12 overlapping ``1h_5m``), instead
    of fanning every minute bucket out to 16 windows. Exact: every measure is a sum, a max,
    a min or a min/max-by, which any grouping of the rows gives alike (docs/benchmarks.md has
    what it saves).
    """
    from pyspark.sql import functions as F

    bucket = _micros(ROLLUP_BUCKET)
    sizes = [WindowSize(size) for size in sizes]
    coarse = [s for s in sizes if all(x % bucket == 0 for back, n in _window_starts(s) for x in (back, n))]
    fine = [s for s in sizes if s not in coarse]
    us = F.unix_micros(F.col("event_time"))
    levels = [F.struct(F.lit(False).alias("coarse"), F.col("event_time").alias("t"))] if fine else []
    if coarse:
        start = F.timestamp_micros(us - F.pmod(us, F.lit(bucket)))
        levels.append(F.struct(F.lit(True).alias("coarse"), start.alias("t")))
    columns = [c for c in minutes.columns if c != "event_time"]
    buckets = (
        minutes.select(F.explode(F.array(*levels)).alias("_b"), *columns)
        .groupBy(F.col("_b.coarse").alias("_coarse"), F.col("_b.t").alias("event_time"), "coin", "source")
        .agg(*_sums())
    )
    fan = F.array(*_window_entries(fine or coarse))
    if fine and coarse:
        fan = F.when(F.col("_coarse"), F.array(*_window_entries(coarse))).otherwise(fan)
    measures = [c for c in buckets.columns if c != "_coarse"]
    exploded = buckets.select(F.explode(fan).alias("_w"), *measures)
    return aggregate_windows(_with_window_columns(exploded, measures, None))


def aggregate_windows(windowed: DataFrame) -> DataFrame:
    """Sum the measures per (window size, window, coin, source); times become epoch ms."""
    from pyspark.sql import functions as F

    agg = windowed.groupBy("window", "w", "coin", "source").agg(*_sums())
    return agg.select(
        "window",
        _ms(F.col("w.start")).alias("window_start"),
        _ms(F.col("w.end")).alias("window_end"),
        "coin",
        "source",
        "n",
        "s_score",
        "s_conf",
        "s_wscore",
        "n_pos",
        "n_neu",
        "n_neg",
        _ms(F.col("last_event")).alias("last_event"),
        _ms(F.col("last_ingest")).alias("last_ingest"),
        "p_open",
        _ms(F.col("t_open")).alias("t_open"),
        "p_close",
        _ms(F.col("t_close")).alias("t_close"),
        "p_high",
        "p_low",
    )


# -- pandas: per-window finish -------------------------------------------------------------------

TREND_COLUMNS = (
    "coin",
    "window",
    "source",
    "window_start",
    "window_end",
    "volume",
    "mean_score",
    "weighted_score",
    "positive_share",
    "neutral_share",
    "negative_share",
    "social_dominance",
    "volume_zscore",
    "sentiment_zscore",
    "sentiment_change",
    "price_open",
    "price_high",
    "price_low",
    "price_close",
    "price_return",
    "sentiment_return_corr",
    "lead_lag_windows",
    "lead_lag_corr",
    "event_time",
    "ingest_time",
)
"""Columns of a trend frame (times in epoch ms); one row is one TrendWindow."""


def component_field(source: str, coin: str) -> str:
    """Field name of one aggregate row inside a window's component hash."""
    return f"{source}|{coin}"


def component_fields(frame: pd.DataFrame) -> list[str]:
    """:func:`component_field` of every row of a components frame."""
    return [
        component_field(s, c)
        for s, c in zip(frame["source"].astype(str), frame["coin"].astype(str), strict=True)
    ]


def components_json(frame: pd.DataFrame) -> list[str]:
    """The measures of every row of a components frame as compact JSON, keys in MEASURES order.

    The stream (one micro-batch) and the backfill (~10^5 rows) both encode through here, so
    the same sums always give the same bytes: sums are rounded to 12 decimals first (far
    below the published precision, DIGITS), so recomputations that sum in another order
    write byte-identical hashes, and a replayed batch leaves a hash as it was. Encoded
    column by column in Arrow's kernels (a Python string per value cost the backfill ~1 s);
    numbers are in Arrow's shortest round-trip spelling (``100``, ``0.00001``, ``1e+22``),
    which parses back to the same float, and missing values are ``null``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if frame.empty:
        return []
    parts: list[Any] = []
    for i, measure in enumerate(MEASURES):
        column = frame[measure]
        if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iu":
            values = pa.array(column.to_numpy(dtype="int64"))
        else:
            floats = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64")
            missing = np.isnan(floats)
            if measure in _INTEGER:
                values = pa.array(np.round(floats), mask=missing).cast(pa.int64())
            else:
                values = pa.array(np.round(floats, 12) + 0.0, mask=missing)  # + 0.0: no "-0"
        text = pc.fill_null(pc.cast(values, pa.string()), "null")
        parts += [("{" if i == 0 else ",") + f'"{measure}":', text]
    parts += ["}", ""]  # the closing brace, then the (empty) separator
    joined: list[str] = pc.binary_join_element_wise(*parts).to_pylist()
    return joined


_INTEGER = frozenset(INTEGER_MEASURES)


def components_frame(records: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Aggregate rows (dicts, or a frame, with KEY_COLUMNS + MEASURES) as a typed frame."""
    columns = [*KEY_COLUMNS, *MEASURES]
    if isinstance(records, pd.DataFrame):
        frame = records.reindex(columns=columns)
    else:
        frame = pd.DataFrame.from_records(list(records), columns=columns)
    for col in ("n", "n_pos", "n_neu", "n_neg", "window_start", "window_end"):
        frame[col] = frame[col].fillna(0).astype("int64")
    for col in ("s_score", "s_conf", "s_wscore", "p_open", "p_close", "p_high", "p_low"):
        frame[col] = frame[col].astype("float64")
    for col in ("last_event", "last_ingest", "t_open", "t_close"):
        frame[col] = frame[col].astype("Float64").astype("float64")
    return frame


def _round(values: pd.Series | np.ndarray) -> np.ndarray:
    return np.round(np.asarray(values, dtype="float64"), DIGITS)


def build_trend_frame(components: pd.DataFrame) -> pd.DataFrame:
    """Complete aggregates of some windows -> one trend row per (window, coin, source).

    ``components`` must hold, for each window it covers, every row of that window
    (all coins, the ``TOTAL_COIN`` rows and the ``PRICE_SOURCE`` rows): dominance and
    prices are looked up inside it. Cross-window features are left empty here.
    """
    keys = ["window", "window_start"]
    if components.empty:
        return pd.DataFrame(columns=list(TREND_COLUMNS))
    posts = components[
        (components["source"] != PRICE_SOURCE) & (components["coin"] != TOTAL_COIN) & (components["n"] > 0)
    ]
    totals = components.loc[components["coin"] == TOTAL_COIN, [*keys, "source", "n"]].rename(
        columns={"n": "total"}
    )
    prices = components.loc[
        components["source"] == PRICE_SOURCE,
        [*keys, "coin", "p_open", "p_high", "p_low", "p_close", "last_ingest"],
    ].rename(columns={"last_ingest": "price_ingest"})
    posts = posts.drop(columns=["p_open", "p_high", "p_low", "p_close", "t_open", "t_close"])
    df = posts.merge(totals, on=[*keys, "source"], how="left").merge(prices, on=[*keys, "coin"], how="left")
    n = df["n"].to_numpy(dtype="float64")
    s_conf = df["s_conf"].to_numpy(dtype="float64")
    mean = df["s_score"].to_numpy(dtype="float64") / n
    weighted = np.where(
        s_conf > 0, df["s_wscore"].to_numpy(dtype="float64") / np.where(s_conf > 0, s_conf, 1), mean
    )
    total = df["total"].fillna(0).to_numpy(dtype="float64")
    p_open = df["p_open"].to_numpy(dtype="float64")
    p_close = df["p_close"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(p_open > 0, p_close / p_open - 1.0, np.nan)
        dominance = np.where(total > 0, n / total, 1.0)
    ingest = np.fmax(
        df["last_ingest"].to_numpy(dtype="float64"), df["price_ingest"].to_numpy(dtype="float64")
    )
    out = pd.DataFrame(
        {
            "coin": df["coin"].to_numpy(),
            "window": df["window"].to_numpy(),
            "source": df["source"].to_numpy(),
            "window_start": df["window_start"].to_numpy(dtype="int64"),
            "window_end": df["window_end"].to_numpy(dtype="int64"),
            "volume": df["n"].to_numpy(dtype="int64"),
            "mean_score": np.clip(_round(mean), -1.0, 1.0),
            "weighted_score": np.clip(_round(weighted), -1.0, 1.0),
            "positive_share": _round(df["n_pos"].to_numpy(dtype="float64") / n),
            "neutral_share": _round(df["n_neu"].to_numpy(dtype="float64") / n),
            "negative_share": _round(df["n_neg"].to_numpy(dtype="float64") / n),
            "social_dominance": np.clip(_round(dominance), 0.0, 1.0),
            "volume_zscore": np.nan,
            "sentiment_zscore": np.nan,
            "sentiment_change": np.nan,
            "price_open": p_open,
            "price_high": df["p_high"].to_numpy(dtype="float64"),
            "price_low": df["p_low"].to_numpy(dtype="float64"),
            "price_close": p_close,
            "price_return": _round(ret),
            "sentiment_return_corr": np.nan,
            "lead_lag_windows": np.nan,
            "lead_lag_corr": np.nan,
            "event_time": df["last_event"].to_numpy(dtype="float64").astype("int64"),
            "ingest_time": ingest.astype("int64"),
        }
    )
    return out.sort_values(["window", "coin", "source", "window_start"], ignore_index=True)


def history_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """History points (window, coin, source, window_start, volume, weighted_score, price_return)."""
    cols = ["window", "coin", "source", "window_start", "volume", "weighted_score", "price_return"]
    frame = pd.DataFrame.from_records(list(rows), columns=cols)
    frame["window_start"] = frame["window_start"].astype("int64")
    for col in ("volume", "weighted_score", "price_return"):
        frame[col] = frame[col].astype("float64")
    return frame


def _trailing(values: np.ndarray, size: int, *, include_current: bool, fill: Any = np.nan) -> np.ndarray:
    """Row i holds the ``size`` values before i (or ending at i), padded on the left with
    ``fill`` (a read-only view, not a copy)."""
    padded = np.concatenate([np.full(size, fill, dtype=values.dtype), values])
    view = np.lib.stride_tricks.sliding_window_view(padded, size)
    return view[1 : len(values) + 1] if include_current else view[: len(values)]


def _trailing_zscore(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(z-score, difference from the mean) of each value against the ``size`` values before it.

    Population statistics over the earlier values that exist; NaN with fewer than two of
    them or no spread (std <= 1e-6: rounding noise is not a spread).
    """
    prev = _trailing(values, size, include_current=False)
    present = ~np.isnan(prev)
    count = np.sum(present, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.sum(np.where(present, prev, 0.0), axis=1) / np.maximum(count, 1)
        var = np.sum(np.where(present, (prev - mean[:, None]) ** 2, 0.0), axis=1) / np.maximum(count, 1)
        std = np.sqrt(var)
        spread = (count >= 2) & (std > 1e-6)
        z = np.where(spread, (values - mean) / np.where(spread, std, 1.0), np.nan)
        change = np.where(count >= 2, values - mean, np.nan)
    return z, change


def _trailing_corr(x: np.ndarray, y: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(Pearson correlation, number of complete pairs) of x and y over the ``size`` rows ending
    at each row; NaN where a value is missing or a side has no spread."""
    with np.errstate(invalid="ignore", divide="ignore"):
        xs = _trailing(x, size, include_current=True)
        ys = _trailing(y, size, include_current=True)
        mask = ~np.isnan(xs) & ~np.isnan(ys)
        k = np.sum(mask, axis=1)
        mx = np.sum(np.where(mask, xs, 0.0), axis=1) / np.maximum(k, 1)
        my = np.sum(np.where(mask, ys, 0.0), axis=1) / np.maximum(k, 1)
        dx = np.where(mask, xs - mx[:, None], 0.0)
        dy = np.where(mask, ys - my[:, None], 0.0)
        sxy = np.sum(dx * dy, axis=1)
        sxx = np.sum(dx * dx, axis=1)
        syy = np.sum(dy * dy, axis=1)
        ok = (sxx > 1e-18) & (syy > 1e-18)
        corr = np.where(ok, sxy / np.sqrt(np.where(ok, sxx * syy, 1.0)), np.nan)
    return np.clip(corr, -1.0, 1.0), k


def _series_features(
    vol: np.ndarray, score: np.ndarray, ret: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Volume z-score, sentiment z-score and change, sentiment-return correlation of one series."""
    z, _ = _trailing_zscore(vol, size)
    score_z, score_change = _trailing_zscore(score, size)
    corr, pairs = _trailing_corr(score, ret, size)
    return z, score_z, score_change, np.where(pairs >= 3, corr, np.nan)


LEAD_LAG_MIN_PAIRS = 8
"""A lag is only weighed with at least this many (sentiment, later return) pairs: with fewer,
the largest lags (fewest pairs) win by chance and the estimate says nothing."""


def _shifted(values: np.ndarray, by: int, *, fill: Any = np.nan) -> np.ndarray:
    """``values`` moved ``by`` rows later (row i holds ``values[i - by]``), padded with ``fill``."""
    if by <= 0:
        return values
    pad = np.full(min(by, len(values)), fill, dtype=values.dtype)
    return np.concatenate([pad, values[: max(len(values) - by, 0)]])


def _lead_lag(
    score: np.ndarray, ret: np.ndarray, pos: np.ndarray, size: int, max_lag: int
) -> tuple[np.ndarray, np.ndarray]:
    """(lag, correlation) per row: the k in [-max_lag, max_lag] maximising |corr(score_t, ret_t+k)|
    over the ``size`` windows of its series ending at the row (positive k: sentiment leads price).

    Rows are many series back to back, each sorted by time; ``pos`` is a row's index within
    its series, so one vectorized pass covers every series (a loop per series and lag cost
    seconds per micro-batch) and no window reaches into the previous series. For lag k the
    pairs are (score[e - max(k, 0)], ret[e - max(-k, 0)]) for the last ``size - |k|`` windows
    e that have |k| earlier windows in the series, so both sides lie inside the trailing
    ``size`` windows (the same pairs however much older history is loaded). Ties go to the
    smaller |k|, then to sentiment leading. NaN (no estimate) where no lag has
    :data:`LEAD_LAG_MIN_PAIRS` complete pairs.
    """
    n = len(score)
    lag_out = np.full(n, np.nan)
    corr_out = np.full(n, np.nan)
    order = [0] + [k for d in range(1, max_lag + 1) for k in (d, -d)]
    order = [k for k in order if size - abs(k) >= LEAD_LAG_MIN_PAIRS]
    if not order or n == 0:
        return lag_out, corr_out
    back = np.arange(size - 1, -1, -1)  # column c of a trailing view is ``back[c]`` rows before
    # NaN-free copies and validity masks, shifted and viewed per lag without copies; the
    # moments come from masked products (one-pass sums over at most ``size`` values), which
    # makes a few (rows x size) temporaries per lag instead of about fifteen.
    score_ok, ret_ok = ~np.isnan(score), ~np.isnan(ret)
    score0, ret0 = np.where(score_ok, score, 0.0), np.where(ret_ok, ret, 0.0)
    table = np.full((len(order), n), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        for i, k in enumerate(order):
            lead, trail = max(k, 0), max(-k, 0)
            xs = _trailing(_shifted(score0, lead), size, include_current=True)
            ys = _trailing(_shifted(ret0, trail), size, include_current=True)
            # Pairs whose earlier side is inside the trailing windows and inside the series.
            reach = np.minimum(pos - abs(k), size - 1 - abs(k))
            mask = back[None, :] <= reach[:, None]
            mask &= _trailing(_shifted(score_ok, lead, fill=False), size, include_current=True, fill=False)
            mask &= _trailing(_shifted(ret_ok, trail, fill=False), size, include_current=True, fill=False)
            pairs = np.count_nonzero(mask, axis=1)
            mxs = np.where(mask, xs, 0.0)
            mys = np.where(mask, ys, 0.0)
            count = np.maximum(pairs, 1)
            sx, sy = mxs.sum(axis=1), mys.sum(axis=1)
            xx, yy = np.einsum("ij,ij->i", mxs, mxs), np.einsum("ij,ij->i", mys, mys)
            sxx = xx - sx * sx / count
            syy = yy - sy * sy / count
            sxy = np.einsum("ij,ij->i", mxs, mys) - sx * sy / count
            # A constant side leaves one-pass rounding noise (~1e-16 of its square sum),
            # not a spread: the guard is relative as well as absolute.
            spread_x = (sxx > 1e-18) & (sxx > 1e-12 * xx)
            spread_y = (syy > 1e-18) & (syy > 1e-12 * yy)
            ok = (pairs >= LEAD_LAG_MIN_PAIRS) & spread_x & spread_y
            corr = sxy / np.sqrt(np.where(ok, sxx * syy, 1.0))
            table[i] = np.where(ok, np.clip(_round(corr), -1.0, 1.0), np.nan)
    known = ~np.all(np.isnan(table), axis=0)
    strength = np.where(np.isnan(table), -1.0, np.abs(table))
    best = np.argmax(strength, axis=0)  # first maximum: the order above breaks ties
    lag_out[known] = np.asarray(order, dtype="float64")[best][known]
    corr_out[known] = table[best, np.arange(n)][known]
    return lag_out, corr_out


def add_cross_window_features(
    trends: pd.DataFrame,
    history: pd.DataFrame,
    trailing: int = 20,
    *,
    max_lag: int = DEFAULT_LEAD_LAG_MAX_WINDOWS,
) -> pd.DataFrame:
    """Fill volume and sentiment z-scores, sentiment change, sentiment-return correlation and
    the sentiment/price lead-lag.

    z-scores: the window's volume (and confidence-weighted score) against the mean and
    (population) standard deviation of the ``trailing`` previous windows of the same
    (size, coin, source) that exist; need two of them and a non-zero spread. Sentiment
    change: the weighted score minus that trailing mean. Correlation: Pearson correlation of the
    confidence-weighted score and the price return over the last ``trailing`` windows
    including this one, where both are known; needs three points. Lead-lag: over the same
    trailing windows, the shift k in [-``max_lag``, ``max_lag``] windows maximising
    |corr(score_t, return_t+k)| and that correlation (see :func:`_lead_lag`; positive k:
    sentiment moved first). ``history`` holds earlier windows (rows also in ``trends`` are
    taken from ``trends``).
    """
    if trends.empty:
        return trends
    keys = ["window", "coin", "source"]
    current = trends[[*keys, "window_start", "volume", "weighted_score", "price_return"]].copy()
    current["_row"] = np.arange(len(trends))
    hist = history.copy()
    if not hist.empty:
        seen = set(
            zip(current["window"], current["coin"], current["source"], current["window_start"], strict=True)
        )
        stale = [
            (w, c, s, t) in seen
            for w, c, s, t in zip(
                hist["window"], hist["coin"], hist["source"], hist["window_start"], strict=True
            )
        ]
        hist = hist[~np.asarray(stale, dtype=bool)]
    hist = hist.assign(_row=-1)
    merged = pd.concat([hist, current], ignore_index=True).astype({"volume": "float64"})
    merged = merged.sort_values([*keys, "window_start"], kind="stable", ignore_index=True)
    z_out = np.full(len(trends), np.nan)
    sz_out = np.full(len(trends), np.nan)
    sc_out = np.full(len(trends), np.nan)
    c_out = np.full(len(trends), np.nan)
    lag_out = np.full(len(trends), np.nan)
    lc_out = np.full(len(trends), np.nan)
    for _, group in merged.groupby(keys, sort=False):
        z, score_z, score_change, corr = _series_features(
            group["volume"].to_numpy(dtype="float64"),
            group["weighted_score"].to_numpy(dtype="float64"),
            group["price_return"].to_numpy(dtype="float64"),
            trailing,
        )
        rows = group["_row"].to_numpy()
        own = rows >= 0
        z_out[rows[own]] = z[own]
        sz_out[rows[own]] = score_z[own]
        sc_out[rows[own]] = score_change[own]
        c_out[rows[own]] = corr[own]
    # Lead-lag of every series in one vectorized pass (``_lead_lag`` keeps series apart).
    lag, lag_corr = _lead_lag(
        merged["weighted_score"].to_numpy(dtype="float64"),
        merged["price_return"].to_numpy(dtype="float64"),
        merged.groupby(keys, sort=False).cumcount().to_numpy(),
        trailing,
        max_lag,
    )
    rows = merged["_row"].to_numpy()
    own = rows >= 0
    lag_out[rows[own]] = lag[own]
    lc_out[rows[own]] = lag_corr[own]
    out = trends.copy()
    out["volume_zscore"] = _round(z_out)
    out["sentiment_zscore"] = _round(sz_out)
    out["sentiment_change"] = np.clip(_round(sc_out), -2.0, 2.0)
    out["sentiment_return_corr"] = np.clip(_round(c_out), -1.0, 1.0)
    out["lead_lag_windows"] = lag_out
    out["lead_lag_corr"] = np.clip(_round(lc_out), -1.0, 1.0)
    return out


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def to_trend_windows(trends: pd.DataFrame) -> list[TrendWindow]:
    """Trend rows -> validated TrendWindow models (what Redis and pub/sub carry).

    Columns are converted to Python values once, column by column (missing values to
    ``None``), rather than through ``to_dict("records")`` and a ``pd.isna`` per value: a
    backfill converts ~10^5 rows.
    """
    n = len(trends)

    def ints(col: str) -> list[int]:
        return trends[col].to_numpy(dtype="int64").tolist()

    moments: dict[int, datetime] = {}  # one datetime per distinct millisecond: windows share starts

    def times(col: str) -> list[datetime]:
        values = ints(col)
        moments.update((ms, _utc(ms)) for ms in set(values).difference(moments))
        return [moments[ms] for ms in values]

    def floats(col: str) -> list[float]:
        return trends[col].to_numpy(dtype="float64").tolist()

    def optional(col: str) -> list[float | None]:
        if col not in trends:  # columns absent in lake files of older versions
            return [None] * n
        values = pd.to_numeric(trends[col], errors="coerce").to_numpy(dtype="float64").tolist()
        return [None if v != v else v for v in values]

    def optional_int(col: str) -> list[int | None]:
        return [None if v is None else int(v) for v in optional(col)]

    columns = {
        "coin": trends["coin"].astype(str).tolist(),
        "window": trends["window"].astype(str).tolist(),
        "source": trends["source"].astype(str).tolist(),
        "window_start": times("window_start"),
        "window_end": times("window_end"),
        "event_time": times("event_time"),
        "ingest_time": times("ingest_time"),
        "volume": ints("volume"),
        **{col: floats(col) for col in _TREND_FLOATS},
        **{col: optional(col) for col in _TREND_OPTIONAL_FLOATS},
        "lead_lag_windows": optional_int("lead_lag_windows"),
    }
    windows = []
    for values in zip(*columns.values(), strict=True):
        rec = dict(zip(columns, values, strict=True))
        windows.append(
            TrendWindow(
                source_id=TrendWindow.make_source_id(
                    rec["coin"], rec["window"], rec["source"], rec["window_start"]
                ),
                **rec,
            )
        )
    return windows


_TREND_FLOATS = tuple(name for name, f in TrendWindow.model_fields.items() if f.annotation is float)
"""TrendWindow's required float fields (scores, shares, dominance), read from the schema."""
_TREND_OPTIONAL_FLOATS = tuple(
    name for name, f in TrendWindow.model_fields.items() if f.annotation == (float | None)
)
"""TrendWindow's optional float fields (z-scores, prices, correlations): ``None`` when missing."""
