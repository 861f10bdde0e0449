"""The trend jobs' input: Kafka topics (streaming and batch) and lake rows as typed events.

Both jobs read the same two topics, scored posts and price ticks, as JSON. The
streaming job subscribes through :func:`kafka_stream`; the backfill reads a bounded
offset range or the events lake. Kafka records go through :func:`parse_events`; the lake
already stores the typed columns (:mod:`spark_jobs.lake`); both end in
:func:`valid_events`, so the windows (:mod:`spark_jobs.aggregations`) always start from
the same typed, checked columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.settings import Settings
from schemas.events import Source
from schemas.topics import RAW_PRICES, SCORED_POSTS
from spark_jobs.aggregations import COIN_PATTERN

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

POST_SOURCES = tuple(s.value for s in Source if s is not Source.PRICES)
"""Sources a scored post can come from (prices arrive on their own topic)."""

EVENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("source_id", "STRING"),
    ("event_time", "TIMESTAMP"),
    ("ingest_time", "TIMESTAMP"),
    ("source", "STRING"),
    ("text", "STRING"),
    ("coins", "ARRAY<STRING>"),
    ("label", "STRING"),
    ("score", "DOUBLE"),
    ("confidence", "DOUBLE"),
    ("p_negative", "DOUBLE"),
    ("p_neutral", "DOUBLE"),
    ("p_positive", "DOUBLE"),
    ("model_version", "STRING"),
    ("coin", "STRING"),
    ("price", "DOUBLE"),
    # The rest of a ScoredPost / PriceTick: the windows do not read them, the lake keeps them
    # so that an archived event is the whole record in columns.
    ("scored_time", "TIMESTAMP"),
    ("original_length", "INT"),
    ("language", "STRING"),
    ("flags", "ARRAY<STRING>"),
    ("author_hash", "STRING"),
    ("channel", "STRING"),
    ("url", "STRING"),
    ("content_hash", "STRING"),
    ("vs_currency", "STRING"),
    ("market_cap", "DOUBLE"),
    ("volume_24h", "DOUBLE"),
    ("change_24h_pct", "DOUBLE"),
    ("provider", "STRING"),
)
"""Every ScoredPost and PriceTick field as a typed column (name, Spark SQL type)."""
EVENT_COLUMNS = tuple(name for name, _ in EVENT_FIELDS)
EVENT_DDL = ", ".join(f"{name} {kind}" for name, kind in EVENT_FIELDS)
"""The JSON schema ``from_json`` reads; Spark prunes it to the fields a query uses."""


def kafka_stream(spark: SparkSession, settings: Settings) -> DataFrame:
    """Both input topics through the official Kafka source (streaming)."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap)
        .option("subscribe", f"{SCORED_POSTS.name(settings)},{RAW_PRICES.name(settings)}")
        .option("startingOffsets", settings.spark.starting_offsets)
        .option("failOnDataLoss", "false")
        .option("kafka.fetch.max.wait.ms", str(settings.spark.kafka_fetch_max_wait_ms))
    )
    if settings.spark.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.spark.max_offsets_per_trigger))
    return reader.load()


def kafka_events(raw: DataFrame, settings: Settings) -> DataFrame:
    """Kafka rows (topic, value, timestamp) -> (kind, value, kafka_time) with kind post|price."""
    from pyspark.sql import functions as F

    scored, prices = SCORED_POSTS.name(settings), RAW_PRICES.name(settings)
    kind = F.when(F.col("topic") == scored, "post").when(F.col("topic") == prices, "price")
    return raw.select(
        kind.alias("kind"),
        F.col("value").cast("string").alias("value"),
        F.col("timestamp").alias("kafka_time"),
    ).where(F.col("kind").isNotNull())


def parse_events(events: DataFrame) -> DataFrame:
    """(kind, value JSON) -> typed events (``kind`` + :data:`EVENT_COLUMNS`); records that do
    not parse, or that a TrendWindow could not hold, are dropped (:func:`valid_events`)."""
    from pyspark.sql import functions as F

    parsed = events.select("kind", F.from_json("value", EVENT_DDL).alias("e"))
    return valid_events(parsed.select("kind", "e.*"))


def valid_events(typed: DataFrame) -> DataFrame:
    """Keep the typed events the windows can use.

    One bad record must not fail a micro-batch forever (the batch would be replayed with
    the same record), so anything a TrendWindow could not hold is filtered out here, on
    every path: Kafka JSON, the typed lake and its older JSON files.
    """
    from pyspark.sql import functions as F

    ok_post = (
        (F.col("kind") == "post")
        & F.col("score").between(-1.0, 1.0)
        & F.col("source").isin(*POST_SOURCES)
        & (F.col("confidence").isNull() | F.col("confidence").between(0.0, 1.0))
    )
    ok_price = (F.col("kind") == "price") & (F.col("price") > 0) & F.col("coin").rlike(COIN_PATTERN)
    return typed.where(
        F.col("event_time").isNotNull() & F.col("source_id").isNotNull() & (ok_post | ok_price)
    )
