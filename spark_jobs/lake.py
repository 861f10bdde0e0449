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
  The streaming job adds one file per partition per ``spark.lake_interval``
  (:class:`TrendLakeBuffer`), named after the first micro-batch in it; a window updated
  by several batches has several rows, and readers keep the one with the newest ``ingest_time``
  (:func:`read_trends`). A backfill replaces whole partitions (staged, then swapped in by
  renames: :func:`replace_trend_partitions`), after which a partition holds one row per window.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
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
    # The partition value per distinct day, not per row (strftime on 10^5 rows takes a second).
    day = trends["window_start"].astype("int64").to_numpy() // 86_400_000
    names = {d: datetime.fromtimestamp(int(d) * 86_400, UTC).strftime("%Y-%m-%d") for d in set(day.tolist())}
    out["date"] = [names[d] for d in day.tolist()]
    return out


def _partition_tables(trends: pd.DataFrame) -> Iterator[tuple[str, str, pa.Table]]:
    """(date, window, Arrow table without the two partition columns) per lake partition."""
    import pyarrow as pa

    frame = lake_frame(trends)
    for (date, window), part in frame.groupby(["date", "window"], sort=True):
        table = pa.Table.from_pandas(
            part.drop(columns=["date", "window"]).reset_index(drop=True), preserve_index=False
        )
        yield str(date), str(window), table


def _partition_dir(root: Path, date: str, window: str) -> Path:
    return root / f"date={date}" / f"window={window}"


def write_trend_files(trends: pd.DataFrame, root: Path, name: str) -> int:
    """Write one file ``name.parquet`` per (date, window) partition, atomically by rename.

    Used by the streaming sink on the driver: rewriting the same ``name`` (a replayed
    micro-batch) replaces the file instead of adding a duplicate.
    """
    import pyarrow.parquet as pq

    if trends.empty:
        return 0
    files = 0
    with lake_lock(root):  # not while a backfill moves partition folders
        for date, window, table in _partition_tables(trends):
            folder = _partition_dir(root, date, window)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
            pq.write_table(table, tmp, compression="zstd")
            tmp.replace(folder / f"{name}.parquet")
            files += 1
    return files


STAGING_PREFIX = "_staging-"
"""Backfill staging folders inside the trend lake; Spark's file listing skips names that
start with ``_`` or ``.``, so readers never see half-written partitions."""
LOCK_NAME = "_lake.lock"
"""The trend lake's lock file (skipped by readers like the staging folders)."""
_SWAPPING = "SWAPPING"
"""Marker in a staging folder: every new partition is written, the swaps have begun."""


@contextmanager
def lake_lock(root: Path) -> Iterator[None]:
    """Hold the trend lake's exclusive lock (``flock`` on ``root/_lake.lock``): a backfill's
    partition swaps, another backfill and the stream's own file writes never interleave
    (the stream would otherwise write into a folder that is being moved aside). Processes
    on one machine, or a file system whose ``flock`` works across machines."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK_NAME).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _finish_staging(root: Path, staging: Path) -> None:
    """Settle what a backfill left in ``staging`` (under the lake lock), then remove it.

    Once the swaps have begun (``SWAPPING``), every staged partition is complete: one whose
    place is empty is moved in, so a crash half-way through the swaps still ends with the new
    partitions. Before that, nothing was moved and the half-written files are dropped. An old
    partition whose place is still empty is moved back (nothing is ever lost)."""
    import shutil

    for side in ("new", "old") if (staging / _SWAPPING).exists() else ("old",):
        for partition in sorted((staging / side).glob("date=*/window=*")):
            target = root / partition.parent.name / partition.name
            if not target.exists():  # the place is empty: this partition goes in
                target.parent.mkdir(parents=True, exist_ok=True)
                partition.rename(target)
    shutil.rmtree(staging, ignore_errors=True)


def replace_trend_partitions(trends: pd.DataFrame, root: Path) -> int:
    """Backfill: replace the (date, window) partitions present in ``trends``, one file each;
    partitions outside the result are untouched. Returns the partitions replaced.

    Under the lake lock, every new partition is written into a staging folder inside the
    lake first (the same file system, so the swap is a rename), then each partition folder
    is swapped for its staged one: the old folder is renamed aside, the new one renamed in,
    the old one deleted. A failure or crash part-way is settled by :func:`_finish_staging`,
    at once or by the next backfill: before the swaps the lake is as it was, after they
    began every new partition ends in place. Written with pyarrow in the calling process,
    like the stream's own lake files (the lake is a path every process sees): the C++
    writer runs outside the GIL, beside the backfill's Redis writes, and needs no Spark job.
    """
    import pyarrow.parquet as pq

    if trends.empty:
        return 0
    with lake_lock(root):
        for stale in sorted(root.glob(f"{STAGING_PREFIX}*")):
            _finish_staging(root, stale)  # left by a backfill that died (we hold the lock)
        staging = root / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        name = f"backfill-{staging.name.removeprefix(STAGING_PREFIX)}.parquet"
        staged: list[tuple[str, str]] = []
        try:
            for date, window, table in _partition_tables(trends):
                folder = _partition_dir(staging / "new", date, window)
                folder.mkdir(parents=True)
                pq.write_table(table, folder / name, compression="zstd")
                staged.append((date, window))
            (staging / _SWAPPING).touch()
            for date, window in staged:
                target = _partition_dir(root, date, window)
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    aside = _partition_dir(staging / "old", date, window)
                    aside.parent.mkdir(parents=True, exist_ok=True)
                    target.rename(aside)
                _partition_dir(staging / "new", date, window).rename(target)
        finally:
            _finish_staging(root, staging)
    return len(staged)


class TrendLakeBuffer:
    """Gathers the streaming sink's trend rows into one lake file per partition per interval.

    A file per micro-batch and partition would be ~40,000 small files a day at a 10 s
    trigger and ten times that at 1 s. Instead the rows of consecutive batches are kept and
    written as one file per (date, window) once ``interval_s`` has passed since the first of
    them, named after that first batch. Until then every batch rewrites one pending file
    (outside the lake, beside the checkpoint) with all rows not yet in the lake, so a crash
    loses nothing: the next buffer moves the pending rows into the lake before it takes new
    ones. A batch replayed after a crash may then be in the lake twice, as identical rows,
    which :func:`read_trends` reads once (it keeps the newest row of each window).
    """

    def __init__(self, root: Path, pending_dir: Path, token: str, interval_s: float) -> None:
        self.root = root
        self.pending_dir = pending_dir
        self.token = token
        self.interval_s = interval_s
        self._frames: list[pd.DataFrame] = []
        self._first_batch: int | None = None
        self._opened = 0.0
        self.recover()

    @property
    def pending_rows(self) -> int:
        return sum(len(f) for f in self._frames)

    def recover(self) -> int:
        """Move what an earlier run left pending into the lake; returns files written."""
        files = 0
        for pending in sorted(self.pending_dir.glob("pending-*.parquet")):
            first = int(pending.stem.split("-", 1)[1])
            files += write_trend_files(pd.read_parquet(pending), self.root, self._name(first))
            pending.unlink()
        return files

    def add(self, trends: pd.DataFrame, batch_id: int) -> int:
        """Take one batch's rows; returns the lake files written (0 while the interval runs)."""
        if trends.empty:
            return 0
        if self._first_batch is None:
            self._first_batch, self._opened = batch_id, time.monotonic()
        self._frames.append(trends)
        if time.monotonic() - self._opened >= self.interval_s:
            return self.flush()
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.pending_dir / f".pending.{uuid.uuid4().hex}.tmp"
        pd.concat(self._frames, ignore_index=True).to_parquet(tmp, index=False)
        tmp.replace(self._pending_path())
        return 0

    def flush(self) -> int:
        """Write the gathered rows into the lake now (also at shutdown); returns files written."""
        if self._first_batch is None:
            return 0
        files = write_trend_files(
            pd.concat(self._frames, ignore_index=True), self.root, self._name(self._first_batch)
        )
        self._pending_path().unlink(missing_ok=True)
        self._frames, self._first_batch = [], None
        return files

    def _name(self, first_batch: int) -> str:
        return f"stream-{self.token}-{first_batch:010d}"

    def _pending_path(self) -> Path:
        return self.pending_dir / f"pending-{self._first_batch:010d}.parquet"


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
