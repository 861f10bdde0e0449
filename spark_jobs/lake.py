"""The Parquet history lake under ``settings.home / "lake"`` (or ``settings.spark.lake_dir``).

Three datasets:

* ``events/kind=post|price/date=YYYY-MM-DD/``: every scored post and price tick as typed
  columns (:data:`spark_jobs.inputs.EVENT_FIELDS`: the whole record, no JSON strings),
  written by the streaming job's archive query (Spark file sink: exactly once through its
  ``_spark_metadata`` log). The backfill reads history from here with ``--source lake``
  without parsing anything (:func:`read_events`). Files written before the lake was typed
  hold (source_id, event_time, value JSON); they are still read, and parsed.
* ``seeded-events/`` in the same layout: the bundled history a first ``cryptopulse up``
  loads (``spark_jobs/history.py``). Kept apart because Spark reads ``events/`` only
  through the archive's log; the backfill reads both.
* ``trends/date=YYYY-MM-DD/window=1m|5m|1h|1d|1h_5m/``: trend windows of every source.
  The streaming job adds one file per micro-batch and partition, named after the batch
  (a replayed batch overwrites its own file); a window updated by several batches has
  several rows, and readers keep the one with the newest ``ingest_time``
  (:func:`read_trends`). A backfill replaces whole partitions (dynamic partition
  overwrite: staged, then swapped in), after which a partition holds one row per window.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from core.settings import Settings
from spark_jobs.inputs import EVENT_COLUMNS, EVENT_DDL, EVENT_FIELDS, parse_events, valid_events
from spark_jobs.session import lake_dir

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from schemas.events import PriceTick, ScoredPost

TIME_COLUMNS = ("window_start", "window_end", "event_time", "ingest_time")
EVENTS_READ_DDL = f"{EVENT_DDL}, value STRING, kind STRING, date DATE"
"""How the backfill reads the events lake: the typed columns, the JSON ``value`` of files
written before the lake was typed, and the two partition columns. A fixed schema, so no
file footer is read to infer it and a column a file lacks reads as null."""


def events_path(settings: Settings) -> Path:
    return lake_dir(settings) / "events"


def seeded_events_path(settings: Settings) -> Path:
    """Events the first-start history seed wrote (``spark_jobs/history.py``), same layout as
    ``events/`` but outside the archive's ``_spark_metadata`` log, which would hide them."""
    return lake_dir(settings) / "seeded-events"


def trends_path(settings: Settings) -> Path:
    return lake_dir(settings) / "trends"


def event_arrow_schema() -> pa.Schema:
    """:data:`EVENT_FIELDS` as an Arrow schema: what Spark's archive writes, for files the
    project writes without Spark (the first-start history, the benchmark's lake)."""
    import pyarrow as pa

    types = {
        "STRING": pa.string(),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
        "DOUBLE": pa.float64(),
        "INT": pa.int32(),
        "ARRAY<STRING>": pa.list_(pa.string()),
    }
    return pa.schema([(name, types[kind]) for name, kind in EVENT_FIELDS])


def event_table(records: list[ScoredPost] | list[PriceTick]) -> pa.Table:
    """Records -> one Arrow table in the lake's typed layout (absent fields are null)."""
    import pyarrow as pa

    rows = [record.model_dump(mode="python") for record in records]
    schema = event_arrow_schema()
    return pa.Table.from_pydict(
        {name: [row.get(name) for row in rows] for name in schema.names}, schema=schema
    )


def write_event_file(table: pa.Table, folder: Path, name: str) -> None:
    """Write ``folder/name.parquet`` atomically (staged under a hidden name, then renamed)."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(folder / f"{name}.parquet")


def read_events(spark: SparkSession, path: Path, first: str, last: str) -> DataFrame:
    """Typed events (``kind`` + :data:`EVENT_COLUMNS`) of the days ``first``..``last``
    (ISO dates, partition pruning) from one events dataset, checked by :func:`valid_events`.

    Typed files are read as they are; rows of older files (a JSON ``value``) are parsed
    like Kafka records. Reading ``events/`` goes through the archive's file-sink log when
    it has one, so only committed files count.
    """
    from pyspark.sql import functions as F

    days = (F.col("date") >= F.lit(first).cast("date")) & (F.col("date") <= F.lit(last).cast("date"))
    frame = spark.read.schema(EVENTS_READ_DDL).parquet(str(path)).where(days)
    typed = valid_events(frame.where(F.col("value").isNull()).select("kind", *EVENT_COLUMNS))
    legacy = parse_events(frame.where(F.col("value").isNotNull()).select("kind", "value"))
    return typed.unionByName(legacy)


def lake_frame(trends: pd.DataFrame) -> pd.DataFrame:
    """Trend rows (epoch-ms times) -> lake columns: UTC timestamps plus ``date`` partition value."""
    out = trends.copy()
    for col in TIME_COLUMNS:
        out[col] = pd.to_datetime(out[col].astype("int64"), unit="ms", utc=True).astype("datetime64[us, UTC]")
    out["volume"] = out["volume"].astype("int64")
    out["date"] = out["window_start"].dt.strftime("%Y-%m-%d")
    return out


def write_trend_files(trends: pd.DataFrame, root: Path, name: str) -> int:
    """Write one file ``name.parquet`` per (date, window) partition, atomically by rename.

    Used by the streaming sink on the driver: rewriting the same ``name`` (a replayed
    micro-batch) replaces the file instead of adding a duplicate.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if trends.empty:
        return 0
    frame = lake_frame(trends)
    files = 0
    for (date, window), part in frame.groupby(["date", "window"], sort=True):
        folder = root / f"date={date}" / f"window={window}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(
            part.drop(columns=["date", "window"]).reset_index(drop=True), preserve_index=False
        )
        tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        tmp.replace(folder / f"{name}.parquet")
        files += 1
    return files


def read_trends(spark: SparkSession, settings: Settings, *, latest_only: bool = True) -> DataFrame:
    """The trend lake as a DataFrame; ``latest_only`` keeps the newest row of each window."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    root = str(trends_path(settings))
    # mergeSchema: files written before a column was added read it as null.
    df = spark.read.option("basePath", root).option("mergeSchema", "true").parquet(root)
    if not latest_only:
        return df
    key = Window.partitionBy("coin", "window", "source", "window_start").orderBy(
        F.col("ingest_time").desc(), F.col("volume").desc()
    )
    return df.withColumn("_rank", F.row_number().over(key)).where("_rank = 1").drop("_rank")


def write_trend_partitions(spark: SparkSession, trends: pd.DataFrame, settings: Settings) -> int:
    """Backfill: replace the (date, window) partitions present in ``trends`` atomically.

    Spark's dynamic partition overwrite stages the new files and swaps each partition in,
    leaving partitions outside the result untouched.
    """
    if trends.empty:
        return 0
    frame = lake_frame(trends)
    df = spark.createDataFrame(frame)
    (
        df.repartition("date", "window")
        .write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .option("compression", "zstd")
        .partitionBy("date", "window")
        .parquet(str(trends_path(settings)))
    )
    return int(frame.groupby(["date", "window"]).ngroups)
