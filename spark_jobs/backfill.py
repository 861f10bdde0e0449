"""Backfill: recompute trend windows over a date range from history, optionally re-scored.

``cryptopulse backfill --from 2026-01-01 --to 2026-01-07 [--model models:/NAME@ALIAS]
[--source kafka|lake]`` runs as a Spark batch job:

1. read the events of [from 00:00, to+1d 00:00) plus one hour (the sliding windows that
   start before the end reach that far): from Kafka through offsets-for-times
   (``startingOffsetsByTimestamp`` / ``endingOffsetsByTimestamp``, widened by
   ``spark.backfill_kafka_slack_s`` because record timestamps trail event times) and then
   filtered on event time, or from the events lake by partition;
2. optionally re-score every post text with a registered model version (an alias is
   pinned to its version first) through a pandas UDF running the same ONNX
   :class:`scoring.runtime.SentimentRuntime` as the stream;
3. de-duplicate, sum into one-minute buckets, roll those up into every window size
   (the same aggregation as the stream), keep the windows that *start* in the range;
4. finish the windows with the stream's own pandas functions (the trailing z-score and
   correlation history before the range comes from Redis), then replace the affected
   lake partitions (staged, then swapped in) and Redis windows.

Every output is a pure function of the input, and every write replaces by key, so
running the same backfill twice leaves the lake and Redis unchanged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial, reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from core.settings import Settings
from schemas.topics import RAW_PRICES, SCORED_POSTS
from scoring.holder import process_runtime
from scoring.labels import VERDICT_FIELDS, VERDICT_FLOATS
from scoring.registry_uri import pinned_uri
from spark_jobs.aggregations import (
    WINDOW_SPECS,
    add_cross_window_features,
    build_trend_frame,
    components_frame,
    measure_rows,
    minute_buckets,
    window_rollup,
)
from spark_jobs.inputs import kafka_events, parse_events
from spark_jobs.lake import (
    events_path,
    read_events,
    replace_trend_partitions,
    seeded_events_path,
    trends_path,
)
from spark_jobs.sink_redis import TrendStore, components_within_retention, within_retention

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

HistorySource = Literal["kafka", "lake"]
Progress = Callable[[str, int], None]
"""Called with (stage description, stage number 1..STAGES) as the backfill advances."""
STAGES = 5
AGG_COLUMNS = (
    "kind",
    "source_id",
    "event_time",
    "ingest_time",
    "source",
    "coins",
    "label",
    "score",
    "confidence",
    "coin",
    "price",
)
"""Event columns the window aggregation reads (plus ``text`` when re-scoring): the only ones
read from the lake and carried through the de-duplication shuffle."""
REACH = timedelta(hours=1)
"""Longest window length: events this far past the range end still belong to its windows."""


class BackfillError(RuntimeError):
    """The backfill cannot run (bad range, unknown source, no model)."""


@dataclass(frozen=True)
class BackfillResult:
    start: date
    end: date
    source: str
    model_version: str | None
    events: int
    aggregates: int
    trends: int
    lake_partitions: int
    redis_windows: int
    stale_removed: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00 UTC, end+1 00:00 UTC)."""
    if end < start:
        raise BackfillError(f"--to {end} is before --from {start}")
    lo = datetime(start.year, start.month, start.day, tzinfo=UTC)
    hi = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    return lo, hi


def kafka_history(spark: SparkSession, settings: Settings, lo: datetime, hi: datetime) -> DataFrame:
    """Typed events of both topics between offsets-for-times of [lo - slack, hi + slack]
    (filtered on event time later)."""
    from core.kafka import admin_client

    topics = [SCORED_POSTS.name(settings), RAW_PRICES.name(settings)]
    metadata = admin_client(settings).list_topics(timeout=10).topics
    slack = timedelta(seconds=settings.spark.backfill_kafka_slack_s)
    begin, finish = _epoch_ms(lo - slack), _epoch_ms(hi + slack)
    missing = [t for t in topics if t not in metadata]
    if missing:
        raise BackfillError(f"topics missing: {', '.join(missing)}")
    starting = {t: {str(p): begin for p in metadata[t].partitions} for t in topics}
    ending = {t: {str(p): finish for p in metadata[t].partitions} for t in topics}
    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap)
        .option("subscribe", ",".join(topics))
        .option("startingOffsetsByTimestamp", json.dumps(starting))
        .option("endingOffsetsByTimestamp", json.dumps(ending))
        .option("startingOffsetsByTimestampStrategy", "latest")
        .option("failOnDataLoss", "false")
        .option("kafka.fetch.max.wait.ms", str(settings.spark.kafka_fetch_max_wait_ms))
        .load()
    )
    return parse_events(kafka_events(raw, settings).select("kind", "value"))


def lake_history(spark: SparkSession, settings: Settings, lo: datetime, hi: datetime) -> DataFrame:
    """The archived (and seeded) events of the days overlapping [lo, hi), typed: no JSON to parse
    (partition pruning on ``date``, only the columns the windows read)."""
    # The archive through its file-sink log (exactly the committed files), plus the seeded history.
    paths = [p for p in (events_path(settings), seeded_events_path(settings)) if any(p.glob("kind=*"))]
    if not paths:
        raise BackfillError(
            f"no events lake at {events_path(settings)}; run `cryptopulse spark stream` or use --source kafka"
        )
    first, last = lo.date().isoformat(), (hi - timedelta(microseconds=1)).date().isoformat()
    frames = [read_events(spark, path, first, last) for path in paths]
    return reduce(lambda a, b: a.unionByName(b), frames)


SCORE_DDL = ", ".join(f"{name} {'DOUBLE' if name in VERDICT_FLOATS else 'STRING'}" for name in VERDICT_FIELDS)


def score_texts(texts: list[Any], model: str, settings: Settings) -> list[dict[str, Any]]:
    """Score texts with the model (loaded once per Python worker process); rejected texts get
    an all-null verdict (kept as they were)."""
    return [result.verdict() for result in process_runtime(model, settings).score(texts)]


def rescore(events: DataFrame, model: str, settings: Settings) -> DataFrame:
    """Replace the verdict of every post with the given model's, through a pandas UDF."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    # Type hints are resolved from this module's globals, hence pandas imported at the top.
    @pandas_udf(SCORE_DDL)  # type: ignore[call-overload]
    def verdict(texts: pd.Series) -> pd.DataFrame:
        rows = score_texts(texts.tolist(), model, settings)
        frame = pd.DataFrame.from_records(rows, columns=list(VERDICT_FIELDS))
        return frame.astype(dict.fromkeys(VERDICT_FLOATS, "float64"))

    posts = events.where(F.col("kind") == "post").withColumn("_v", verdict(F.col("text")))
    replaced = set(VERDICT_FIELDS)
    posts = posts.select(
        *[
            F.coalesce(F.col(f"_v.{c}"), F.col(c)).alias(c) if c in replaced else F.col(c)
            for c in events.columns
        ]
    )
    return posts.unionByName(events.where(F.col("kind") != "post"))


def run_backfill(
    spark: SparkSession,
    settings: Settings,
    start: date,
    end: date,
    *,
    source: HistorySource = "kafka",
    model: str | None = None,
    client: Any | None = None,
    progress: Progress | None = None,
) -> BackfillResult:
    """Recompute and replace the windows that start in [start, end] (UTC days, inclusive)."""

    def step(message: str, number: int) -> None:
        log.info("backfill: %s", message, extra={"stage": number})
        if progress is not None:
            progress(message, number)

    started = time.perf_counter()
    lo, hi = day_bounds(start, end)
    model_version = None
    if model is not None:
        step(f"loading model {model}", 1)
        model = pinned_uri(model, settings)  # every Spark worker loads this version, wherever the alias moves
        model_version = process_runtime(model, settings).model_version
    step(f"reading {source} history {lo:%Y-%m-%d} .. {hi:%Y-%m-%d}", 1)
    if source == "kafka":
        raw = kafka_history(spark, settings, lo, hi + REACH)
    elif source == "lake":
        raw = lake_history(spark, settings, lo, hi + REACH)
    else:
        raise BackfillError(f"unknown source {source!r} (kafka or lake)")
    step("aggregating events into windows", 2)
    rescoring = None if model is None else partial(rescore, model=model, settings=settings)
    aggregates, counted = window_aggregates(raw, lo, hi, rescoring=rescoring)
    # Arrow straight to pandas: the aggregates are longs, doubles and strings only.
    components = components_frame(aggregates.toArrow().to_pandas())
    n_events = observed_count(counted, "events", empty=components.empty)
    step(f"finishing {len(components)} window aggregates of {n_events} events", 3)
    store = TrendStore(
        client if client is not None else redis_client(settings),
        settings.redis.key_prefix,
        trailing=settings.spark.trailing_windows,
    )
    trends = build_trend_frame(components)
    series = sorted(
        {(w, c, s) for w, c, s in zip(trends["window"], trends["coin"], trends["source"], strict=True)}
    )
    trends = add_cross_window_features(
        trends,
        store.history_before(series, _epoch_ms(lo)),
        settings.spark.trailing_windows,
        max_lag=settings.spark.lead_lag_max_windows,
    )
    recent = within_retention(trends)
    step(f"replacing lake partitions ({len(trends)} windows) and Redis windows ({len(recent)})", 4)
    partitions, written, removed = replace_outputs(
        store, components, trends, recent, _epoch_ms(lo), _epoch_ms(hi) - 1, trends_path(settings)
    )
    seconds = time.perf_counter() - started
    step(f"done in {seconds:.1f}s", 5)
    result = BackfillResult(
        start=start,
        end=end,
        source=source,
        model_version=model_version,
        events=n_events,
        aggregates=len(components),
        trends=len(trends),
        lake_partitions=partitions,
        redis_windows=written,
        stale_removed=removed,
        seconds=seconds,
    )
    log.info("backfill finished", extra={k: str(v) for k, v in result.__dict__.items()})
    return result


def window_aggregates(
    raw: DataFrame,
    lo: datetime,
    hi: datetime,
    *,
    rescoring: Callable[[DataFrame], DataFrame] | None = None,
    name: str = "backfill-events",
) -> tuple[DataFrame, Any]:
    """The backfill's Spark part: the events of [lo, hi + REACH) -> the aggregates of every
    window that starts in [lo, hi), and the Observation that counts the events on the way.

    Only what the windows need travels through the shuffle (not the text unless
    ``rescoring``, :func:`rescore` bound to a model, labels the events again), and the
    whole job is one pass: the event count is observed
    instead of caching the events and counting them first. :func:`warm_up` runs this same
    query, so a warm JVM has compiled exactly what a backfill runs.
    """
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    events = raw.where((F.col("event_time") >= F.lit(lo)) & (F.col("event_time") < F.lit(hi + REACH)))
    needed = [*AGG_COLUMNS, "text"] if rescoring is not None else list(AGG_COLUMNS)
    events = first_of_each(events.select(*needed), ["kind", "source_id"])
    if rescoring is not None:
        events = rescoring(events)
    counted = Observation(name)
    events = events.observe(counted, F.count(F.lit(1)).alias("events"))
    aggregates = window_rollup(minute_buckets(measure_rows(events))).where(
        (F.col("window_start") >= _epoch_ms(lo)) & (F.col("window_start") < _epoch_ms(hi))
    )
    return aggregates, counted


def replace_outputs(
    store: TrendStore,
    components: pd.DataFrame,
    trends: pd.DataFrame,
    recent: pd.DataFrame,
    lo_ms: int,
    hi_ms: int,
    lake: Path,
) -> tuple[int, int, int]:
    """Replace the backfilled range everywhere it is kept; returns (lake partitions, Redis
    trend windows written, stale windows removed).

    The lake keeps every window (``trends``); Redis only what its retention keeps
    (``recent``: the rest would be trimmed as soon as written). Three writers run at once,
    each replacing disjoint things, and a failure of any fails the backfill (after all three
    have ended; a rerun replaces whatever the others wrote): pyarrow's C++
    writer replaces the lake partitions (outside the GIL), a second thread the job's own
    Redis state (window components, series history: mostly waiting on Redis), and this
    thread the public views (most of the Python work: validating and encoding windows).
    """
    state = TrendStore(store.client, store.prefix, trailing=store.trailing)  # its own batch
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="backfill-write") as pool:
        lake_write = pool.submit(replace_trend_partitions, trends, lake)

        def replace_state() -> None:
            state.replace_components(components_within_retention(components))
            state.replace_history(recent, lo_ms, hi_ms)

        state_write = pool.submit(replace_state)
        errors: list[BaseException] = []
        written = removed = 0
        try:
            written = store.write_trends(recent, publish=False, history=False)
            removed = store.drop_stale(recent, [w.value for w in WINDOW_SPECS], lo_ms, hi_ms)
        except Exception as exc:
            errors.append(exc)
        # every writer finishes (or fails) before the backfill does; the first failure is
        # raised, the others logged. What the others wrote stays: each write is a
        # replacement, so running the backfill again repairs it.
        for future in (state_write, lake_write):
            if (error := future.exception()) is not None:
                errors.append(error)
        for error in errors[1:]:
            log.error("backfill writer failed as well", extra={"error": repr(error)})
        if errors:
            raise errors[0]
        return lake_write.result(), written, removed


def observed_count(observation: Any, name: str, *, empty: bool) -> int:
    """A count observed on the way through the query. Spark Connect sends no observed
    metrics with an empty result (a classic session sends 0), so an empty result without
    one counted nothing."""
    metrics = observation.get
    if name in metrics:
        return int(metrics[name])
    if not empty:
        raise BackfillError(f"Spark returned results but no {name!r} count; try --master local[2]")
    return 0


WARM_UP_COINS = ("bitcoin", "ethereum", "solana", "cardano", "dogecoin", "ripple")


def warm_up(spark: SparkSession, scratch: Path, events: int = 200_000) -> float:
    """Run the backfill's Spark part once on synthetic events; returns the seconds it took.

    A backfill's first query in a JVM takes about twice as long as the same query later
    (class loading, code generation and the JIT on the hot loops; docs/benchmarks.md), and
    running a streaming job does not warm those paths. The streaming job, which serves
    backfills through Spark Connect, therefore runs this once after it starts: ``events``
    synthetic posts and price ticks over two days are written to ``scratch`` in the lake's
    layout and go through the same read, de-duplication and window aggregation, and the
    result is dropped. Nothing reaches Redis, the lake or Kafka, and the events are deleted.
    """
    import shutil

    from pyspark.sql import functions as F

    started = time.perf_counter()
    coins = F.array(*[F.lit(c) for c in WARM_UP_COINS])
    n_coins = len(WARM_UP_COINS)
    rows = spark.range(events).select(
        F.when(F.col("id") % 40 == 0, F.lit("price")).otherwise(F.lit("post")).alias("kind"),
        F.concat(F.lit("warm-"), F.col("id").cast("string")).alias("source_id"),
        F.timestamp_seconds(F.lit(1_767_225_600) + (F.col("id") * 7919) % 172_800).alias("event_time"),
        F.element_at(coins, (F.col("id") % n_coins + 1).cast("int")).alias("coin"),
    )
    typed = rows.select(
        "kind",
        "source_id",
        "event_time",
        (F.col("event_time") + F.expr("INTERVAL 2 SECONDS")).alias("ingest_time"),
        F.when(F.col("kind") == "post", F.lit("reddit")).alias("source"),
        F.when(F.col("kind") == "post", F.array("coin")).alias("coins"),
        F.when(F.col("kind") == "post", F.lit("neutral")).alias("label"),
        F.when(F.col("kind") == "post", (F.hash("source_id") % 100) / 100.0).alias("score"),
        F.when(F.col("kind") == "post", F.lit(0.8)).alias("confidence"),
        F.when(F.col("kind") == "price", F.col("coin")).alias("coin"),
        F.when(F.col("kind") == "price", 100.0 + F.hash("source_id") % 7).alias("price"),
        F.to_date("event_time").alias("date"),
    )
    for left in scratch.glob("warm-up-*"):  # from a warm-up the process exit cut short
        shutil.rmtree(left, ignore_errors=True)
    folder = scratch / f"warm-up-{time.time_ns()}"
    try:
        typed.write.partitionBy("kind", "date").parquet(str(folder))
        history = read_events(spark, folder, "2026-01-01", "2026-01-02")
        lo, hi = day_bounds(date(2026, 1, 1), date(2026, 1, 2))
        window_aggregates(history, lo, hi, name="warm-up-events")[0].toArrow()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return time.perf_counter() - started


def first_of_each(events: DataFrame, key: list[str]) -> DataFrame:
    """One row per ``key``: the earliest ingested copy (ties: any one).

    ``dropDuplicates`` cannot hash-aggregate rows that carry strings and arrays, so Spark
    sorts them twice (a partial and a final sort aggregate); a row number over the key
    shuffles and sorts once, and Spark keeps only the first row of each key before the
    shuffle (window group limit). About 20 % faster on a million events here.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rank = F.row_number().over(Window.partitionBy(*key).orderBy(F.col("ingest_time").asc_nulls_last()))
    return events.withColumn("_first", rank).where(F.col("_first") == 1).drop("_first")


def redis_client(settings: Settings) -> Any:
    """The backfill's own connection (decoded replies, as :class:`TrendStore` reads them)."""
    import redis

    return redis.Redis.from_url(settings.redis.dsn, decode_responses=True)
