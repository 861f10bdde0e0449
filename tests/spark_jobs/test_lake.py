"""The typed events lake: what the seed and the benchmark write, what the backfill reads back,
and files from before the lake was typed (one JSON ``value`` per event)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.events import PriceTick, ScoredPost
from spark_jobs.inputs import EVENT_COLUMNS
from spark_jobs.lake import TrendLakeBuffer, event_arrow_schema, event_table, read_events, write_event_file
from tests.spark_jobs.conftest import T0, post, tick

pytestmark = pytest.mark.unit

DAY = T0.strftime("%Y-%m-%d")


def _legacy_file(records: list[Any], folder: Path) -> None:
    """The layout the archive wrote before: (source_id, event_time, value JSON)."""
    table = pa.table(
        {
            "source_id": [r.source_id for r in records],
            "event_time": pa.array([r.event_time for r in records], type=pa.timestamp("us", tz="UTC")),
            "value": [r.model_dump_json() for r in records],
        }
    )
    write_event_file(table, folder, "legacy")


def test_event_table_holds_every_field_of_both_records() -> None:
    scored = post(1, T0, ["bitcoin", "solana"], 0.5, 0.8, "positive", "news")
    table = event_table([scored])
    assert table.schema == event_arrow_schema()
    row = table.to_pylist()[0]
    wire = scored.model_dump(mode="python")
    assert {k: row[k] for k in EVENT_COLUMNS if k in wire} == {k: wire[k] for k in EVENT_COLUMNS if k in wire}
    assert row["coin"] is None and row["price"] is None
    price = event_table([tick("bitcoin", T0, 101.5)]).to_pylist()[0]
    assert (price["coin"], price["price"], price["vs_currency"], price["text"]) == (
        "bitcoin",
        101.5,
        "usd",
        None,
    )
    # every field of the wire records has a column, so an archived event loses nothing
    kept = set(EVENT_COLUMNS)
    for model in (ScoredPost, PriceTick):
        missing = set(model.model_fields) - kept - {"schema_version"}
        assert not missing, f"{model.__name__} fields without a lake column: {missing}"


def test_typed_and_legacy_files_read_as_one_typed_frame(spark: Any, tmp_path: Path) -> None:
    root = tmp_path / "events"
    typed_posts = [post(i, T0 + timedelta(seconds=i), ["bitcoin"], 0.2, 0.9, "neutral") for i in range(3)]
    legacy_posts = [
        post(10 + i, T0 + timedelta(seconds=i), ["ethereum"], -0.4, 0.7, "negative") for i in range(2)
    ]
    bad = post(20, T0, ["solana"], 0.1, 0.5, "neutral").model_copy(update={"score": 7.0})
    write_event_file(event_table([*typed_posts, bad]), root / "kind=post" / f"date={DAY}", "typed")
    _legacy_file(legacy_posts, root / "kind=post" / f"date={DAY}")
    write_event_file(event_table([tick("bitcoin", T0, 100.0)]), root / "kind=price" / f"date={DAY}", "typed")
    other_day = (T0 + timedelta(days=3)).strftime("%Y-%m-%d")
    write_event_file(
        event_table([post(30, T0 + timedelta(days=3), ["tron"], 0, 1, "neutral")]),
        root / "kind=post" / f"date={other_day}",
        "typed",
    )

    from pyspark.sql import functions as F

    frame = read_events(spark, root, DAY, DAY)
    assert frame.columns == ["kind", *EVENT_COLUMNS]
    rows = {r["source_id"]: r.asDict() for r in frame.collect()}
    # the out-of-range score is dropped like a bad Kafka record; the other day is pruned
    assert set(rows) == {p.source_id for p in [*typed_posts, *legacy_posts]} | {
        tick("bitcoin", T0, 1).source_id
    }
    assert rows["t3_test10"]["coins"] == ["ethereum"] and rows["t3_test10"]["score"] == -0.4
    millis: dict[str, int] = dict(frame.select("source_id", F.unix_millis("event_time")).collect())
    assert millis["t3_test10"] == int(legacy_posts[0].event_time.timestamp() * 1000)
    assert millis["t3_test1"] == int(typed_posts[1].event_time.timestamp() * 1000)
    assert rows["t3_test0"]["text"] == typed_posts[0].text and rows["t3_test0"]["kind"] == "post"
    price = next(r for r in rows.values() if r["kind"] == "price")
    assert price["price"] == 100.0 and price["coin"] == "bitcoin"


def _trend_rows(minute: int, volume: int) -> pd.DataFrame:
    from spark_jobs.aggregations import TREND_COLUMNS

    start = int(T0.timestamp() * 1000) + minute * 60_000
    row: dict[str, Any] = dict.fromkeys(TREND_COLUMNS)
    row.update(
        coin="bitcoin",
        window="1m",
        source="all",
        window_start=start,
        window_end=start + 60_000,
        volume=volume,
        mean_score=0.1,
        weighted_score=0.1,
        positive_share=0.5,
        neutral_share=0.5,
        negative_share=0.0,
        social_dominance=1.0,
        event_time=start + 1,
        ingest_time=start + 2 + volume,
    )
    return pd.DataFrame([row])


def _lake(root: Path) -> dict[str, int]:
    return {p.name: pq.read_table(p).num_rows for p in sorted(root.rglob("*.parquet"))}


def test_trend_buffer_writes_one_file_per_interval_and_loses_nothing_in_a_crash(tmp_path: Path) -> None:
    root, pending = tmp_path / "trends", tmp_path / "pending"
    buffer = TrendLakeBuffer(root, pending, "tok", interval_s=3600)
    for batch in range(3):
        assert buffer.add(_trend_rows(batch, 5), batch) == 0
    assert _lake(root) == {} and buffer.pending_rows == 3
    assert [p.name for p in pending.iterdir()] == ["pending-0000000000.parquet"]
    # a crash here: the next run's buffer moves the pending rows into the lake first
    del buffer
    again = TrendLakeBuffer(root, pending, "tok", interval_s=3600)
    assert _lake(root) == {"stream-tok-0000000000.parquet": 3} and not list(pending.iterdir())
    again.add(_trend_rows(3, 7), 3)
    assert again.flush() == 1 and _lake(root) == {
        "stream-tok-0000000000.parquet": 3,
        "stream-tok-0000000003.parquet": 1,
    }
    assert again.flush() == 0

    eager = TrendLakeBuffer(tmp_path / "eager", tmp_path / "p2", "tok", interval_s=0)
    assert eager.add(_trend_rows(0, 1), 9) == 1 and _lake(tmp_path / "eager") == {
        "stream-tok-0000000009.parquet": 1
    }


def test_stream_lake_files_read_back_newest_row_per_window(spark: Any, tmp_path: Path) -> None:
    from core.settings import load_settings
    from spark_jobs.lake import read_trends, trends_path

    settings = load_settings(home=tmp_path / "home")
    buffer = TrendLakeBuffer(trends_path(settings), tmp_path / "pending", "tok", interval_s=3600)
    buffer.add(_trend_rows(0, 1), 0)
    buffer.add(pd.concat([_trend_rows(0, 4), _trend_rows(1, 2)]), 1)  # minute 0 updated
    buffer.flush()
    buffer.add(_trend_rows(1, 2), 1)  # a replayed batch in the next file: identical row
    buffer.flush()
    rows = sorted((r["window_start"], r["volume"]) for r in read_trends(spark, settings).collect())
    assert [v for _, v in rows] == [4, 2]


def test_a_backfill_replaces_its_partitions_and_leaves_the_others(spark: Any, tmp_path: Path) -> None:
    from core.settings import load_settings
    from spark_jobs.lake import STAGING_PREFIX, read_trends, replace_trend_partitions, trends_path

    settings = load_settings(home=tmp_path / "home")
    root = trends_path(settings)
    buffer = TrendLakeBuffer(root, tmp_path / "pending", "tok", interval_s=0)
    buffer.add(_trend_rows(0, 1), 0)  # the stream's file in the 1m partition of T0's day
    other_day = _trend_rows(0, 9).assign(window_start=lambda f: f["window_start"] + 86_400_000)
    other_day["window_end"] = other_day["window_start"] + 60_000
    buffer.add(other_day, 1)  # a partition the backfill does not touch
    # A staging folder left by a backfill that died before its swaps: readers skip it.
    (root / f"{STAGING_PREFIX}dead" / "new").mkdir(parents=True)
    pq.write_table(pa.table({"volume": [99]}), root / f"{STAGING_PREFIX}dead" / "new" / "x.parquet")
    assert sorted(r["volume"] for r in read_trends(spark, settings).collect()) == [1, 9]

    assert replace_trend_partitions(pd.concat([_trend_rows(0, 4), _trend_rows(1, 2)]), root) == 1
    files = _lake(root)
    assert len(files) == 2 and files.pop("stream-tok-0000000001.parquet") == 1
    [(name, rows)] = files.items()
    assert name.startswith("backfill-") and rows == 2  # the stream's file is gone with its partition
    assert not list(root.glob(f"{STAGING_PREFIX}*"))  # the dead staging folder was removed
    assert sorted(r["volume"] for r in read_trends(spark, settings).collect()) == [2, 4, 9]
    # Idempotent: the same backfill again leaves one file with the same rows.
    replace_trend_partitions(pd.concat([_trend_rows(0, 4), _trend_rows(1, 2)]), root)
    assert sorted(r["volume"] for r in read_trends(spark, settings).collect()) == [2, 4, 9]
    assert replace_trend_partitions(_trend_rows(0, 1).iloc[0:0], root) == 0


def test_a_backfill_cut_short_is_settled_by_the_next_one_without_losing_a_partition(tmp_path: Path) -> None:
    from spark_jobs.lake import STAGING_PREFIX, replace_trend_partitions

    root = tmp_path / "trends"
    replace_trend_partitions(pd.concat([_trend_rows(0, 1), _trend_rows(0, 2).assign(window="5m")]), root)
    [one_m] = list(root.glob("date=*/window=1m"))
    [five_m] = list(root.glob("date=*/window=5m"))
    date = one_m.parent.name

    # Killed half-way through its swaps: 1m moved aside and its new folder not yet moved in,
    # 5m still in place. The new 1m partition is complete (the swaps had begun).
    swapping = root / f"{STAGING_PREFIX}swapping"
    (swapping / "new" / date).mkdir(parents=True)
    (swapping / "old" / date).mkdir(parents=True)
    one_m.rename(swapping / "old" / date / "window=1m")
    pq.write_table(pa.Table.from_pandas(_trend_rows(0, 7)), tmp_path / "new.parquet")
    (swapping / "new" / date / "window=1m").mkdir()
    (tmp_path / "new.parquet").rename(swapping / "new" / date / "window=1m" / "backfill-x.parquet")
    (swapping / "SWAPPING").touch()
    # Killed while still writing: nothing was moved, its files are dropped.
    writing = root / f"{STAGING_PREFIX}writing"
    (writing / "new" / date / "window=5m").mkdir(parents=True)
    (writing / "new" / date / "window=5m" / "backfill-y.parquet").write_bytes(b"PAR1 half")

    # The next backfill, of another day, settles both first.
    replace_trend_partitions(_trend_rows(0, 3).assign(window="1d"), root)
    assert not list(root.glob(f"{STAGING_PREFIX}*"))
    assert [pq.read_table(p).column("volume").to_pylist() for p in one_m.glob("*.parquet")] == [[7]]
    assert [pq.read_table(p).column("volume").to_pylist() for p in five_m.glob("*.parquet")] == [[2]]


def test_the_streams_lake_writes_wait_for_a_backfills_swaps(tmp_path: Path) -> None:
    import threading

    from spark_jobs.lake import lake_lock, write_trend_files

    root = tmp_path / "trends"
    written = threading.Event()
    with lake_lock(root):

        def write() -> None:
            write_trend_files(_trend_rows(0, 1), root, "stream")
            written.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert not written.wait(0.5)  # blocked while the lock is held
    writer.join(10)
    assert written.is_set() and _lake(root) == {"stream.parquet": 1}
