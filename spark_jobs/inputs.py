"""The trend jobs' input: Kafka topics (streaming and batch) and lake rows as typed events.

Both jobs read the same two topics, scored posts and price ticks, as JSON. The
streaming job subscribes through :func:`kafka_stream`; the backfill reads a bounded
offset range or the events lake. Every path ends in :func:`parse_events`, so the
windows (:mod:`spark_jobs.aggregations`) always start from the same typed columns.
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

EVENT_DDL = (
    "source_id STRING, event_time TIMESTAMP, ingest_time TIMESTAMP, source STRING, text STRING, "
    "coins ARRAY<STRING>, label STRING, score DOUBLE, confidence DOUBLE, p_negative DOUBLE, "
    "p_neutral DOUBLE, p_positive DOUBLE, model_version STRING, coin STRING, price DOUBLE"
)
"""Superset of the ScoredPost and PriceTick JSON fields the trend job reads."""


def kafka_stream(spark: SparkSession, settings: Settings) -> DataFrame:
    """Both input topics through the official Kafka source (streaming)."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap)
        .option("subscribe", f"{SCORED_POSTS.name(settings)},{RAW_PRICES.name(settings)}")
        .option("startingOffsets", settings.spark.starting_offsets)
        .option("failOnDataLoss", "false")
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
    """(kind, value JSON) -> typed events; records that do not parse are dropped."""
    from pyspark.sql import functions as F

    parsed = events.select("kind", "value", F.from_json("value", EVENT_DDL).alias("e"))
    typed = parsed.select("kind", "value", "e.*")
    # Anything a TrendWindow could not hold is dropped here: one bad record must not fail
    # a micro-batch forever (the batch would be replayed with the same record).
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
