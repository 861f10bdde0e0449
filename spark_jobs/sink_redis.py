"""Redis side of the trend job: window components, series history and the public views.

Every write goes through :class:`views.RedisViewWriter` (``self.views``), which owns the
Lua scripts, trims and TTLs; this module decides *what* to write and reads the job's
state back. Public views (``trend:latest``, ``trend:ts``, ``trending``, ``coins`` and
the ``live:trends`` channel) get only ``source == "all"`` windows. Two internal
structures, owned by this job, make micro-batches mergeable and replay-safe (key names
in :class:`schemas.redis_keys.RedisKeys`):

* ``{p}:spark:agg:{w}:{start_ms}`` HASH ``source|coin`` -> JSON sums of one window.
  Spark's update mode emits full aggregates (not deltas), so an HSET of the same batch
  twice leaves the hash as it was; reading the whole hash back gives every coin of the
  window, which is what social dominance and price fields need.
* ``{p}:spark:hist:{w}:{coin}:{source}`` ZSET score = window_start seconds, member = JSON
  (start, volume, weighted score, return): the trailing windows of every series, per
  source too, for z-scores and correlations. Replaced by score, trimmed by retention.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from schemas.events import WindowSize
from schemas.redis_keys import RETENTION_SECONDS, WINDOW_SECONDS, RedisKeys
from spark_jobs.aggregations import (
    KEY_COLUMNS,
    MEASURES,
    component_fields,
    components_frame,
    components_json,
    history_frame,
    to_trend_windows,
)
from views import RedisViewWriter

_ROWS_PER_CALL = 3000
"""Backfill replacements are sent in script calls of about this many rows (whole windows
or series), each holding Redis for a few milliseconds."""

WindowKey = tuple[str, int]
"""(window size, window_start epoch ms)."""


class TrendStore:
    """Reads the job's Redis state and writes it and the views, under one key prefix
    (``settings.redis.key_prefix``)."""

    def __init__(self, client: Any, prefix: str, *, trailing: int = 20) -> None:
        self.client = client
        self.prefix = prefix
        self.trailing = trailing
        self.keys = RedisKeys(prefix)
        self.views = RedisViewWriter(client, prefix)

    # -- window components ------------------------------------------------------------------------
    def upsert_components(self, rows: Iterable[Mapping[str, Any]]) -> set[WindowKey]:
        """HSET each aggregate row into its window's hash; returns the windows touched."""
        records = list(rows)
        for row in records:  # a record without its key is a bug upstream: fail, do not write it
            missing = [key for key in ("window", "window_start", "source", "coin") if key not in row]
            if missing:
                raise KeyError(f"aggregate row without {missing}")
        frame = components_frame(records)
        fields: dict[WindowKey, dict[str, str]] = {}
        keys = zip(frame["window"].astype(str), frame["window_start"].tolist(), strict=True)
        for window, field, payload in zip(keys, component_fields(frame), components_json(frame), strict=True):
            fields.setdefault(window, {})[field] = payload
        for (window_size, start), values in fields.items():
            self.views.add_window_components(window_size, start, values)
        self.views.flush()
        return set(fields)

    def replace_components(self, frame: pd.DataFrame) -> set[WindowKey]:
        """Backfill: each window's hash becomes exactly the given rows (DEL + HSET, atomically)."""
        if frame.empty:
            return set()
        ordered = frame.sort_values(["window", "window_start"], kind="stable")
        fields = component_fields(ordered)
        payloads = components_json(ordered)
        windows = ordered["window"].astype(str).to_numpy()
        starts = ordered["window_start"].to_numpy(dtype="int64")
        touched: set[WindowKey] = set()
        for runs in _grouped_runs(_run_bounds(windows, starts)):  # a run: one window's hash
            batch = [
                (
                    str(windows[begin]),
                    int(starts[begin]),
                    dict(zip(fields[begin:end], payloads[begin:end], strict=True)),
                )
                for begin, end in runs
            ]
            self.views.replace_window_components(batch)
            touched.update((window, start) for window, start, _ in batch)
            self.views.flush()
        return touched

    def load_components(self, windows: Iterable[WindowKey]) -> pd.DataFrame:
        """Every stored aggregate row of the given windows."""
        keys = sorted(set(windows))
        pipe = self.client.pipeline(transaction=False)
        for window, start in keys:
            pipe.hgetall(self.keys.spark_components(window, start))
        records: list[dict[str, Any]] = []
        for (window, start), stored in zip(keys, pipe.execute(), strict=True):
            end = start + _window_ms(window)
            for field, payload in stored.items():
                source, coin = _text(field).split("|", 1)
                rec: dict[str, Any] = json.loads(payload)
                rec.update(window=window, window_start=start, window_end=end, coin=coin, source=source)
                records.append(rec)
        return components_frame(records)

    # -- series history -----------------------------------------------------------------------------
    def load_history(self, trends: pd.DataFrame) -> pd.DataFrame:
        """For each series in ``trends``: the ``trailing`` windows before its first row and all
        stored windows between its first and last row."""
        series = trends.groupby(["window", "coin", "source"])["window_start"].agg(["min", "max"])
        pipe = self.client.pipeline(transaction=False)
        order = []
        for (window, coin, source), bounds in series.iterrows():
            key = self.keys.spark_history(str(window), str(coin), str(source))
            lo, hi = int(bounds["min"]) // 1000, int(bounds["max"]) // 1000
            pipe.zrevrangebyscore(key, f"({lo}", "-inf", start=0, num=self.trailing)
            pipe.zrangebyscore(key, lo, hi)
            order.append((window, coin, source))
        results = pipe.execute() if order else []
        rows = []
        for i, (window, coin, source) in enumerate(order):
            for payload in [*results[2 * i], *results[2 * i + 1]]:
                point = json.loads(payload)
                rows.append(
                    {
                        "window": window,
                        "coin": coin,
                        "source": source,
                        "window_start": point["t"],
                        "volume": point["v"],
                        "weighted_score": point["w"],
                        "price_return": point["r"],
                    }
                )
        return history_frame(rows)

    def history_before(self, series: Iterable[tuple[str, str, str]], start_ms: int) -> pd.DataFrame:
        """The ``trailing`` windows of each series that start before ``start_ms`` (backfill)."""
        keys = list(series)
        pipe = self.client.pipeline(transaction=False)
        for window, coin, source in keys:
            pipe.zrevrangebyscore(
                self.keys.spark_history(window, coin, source),
                f"({start_ms // 1000}",
                "-inf",
                start=0,
                num=self.trailing,
            )
        rows = []
        for (window, coin, source), points in zip(keys, pipe.execute() if keys else [], strict=True):
            for payload in points:
                p = json.loads(payload)
                rows.append(
                    {
                        "window": window,
                        "coin": coin,
                        "source": source,
                        "window_start": p["t"],
                        "volume": p["v"],
                        "weighted_score": p["w"],
                        "price_return": p["r"],
                    }
                )
        return history_frame(rows)

    # -- writes ----------------------------------------------------------------------------------------
    def write_trends(
        self, trends: pd.DataFrame, *, publish: bool = True, history: bool = True, chunk: int = 2000
    ) -> int:
        """Series history for every row (unless ``history=False``), then the public views for
        ``source == "all"`` rows."""
        if trends.empty:
            return 0
        if history:
            self._write_history(trends, chunk)
        overall = trends[trends["source"] == "all"]
        written = 0
        for begin in range(0, len(overall), chunk):
            windows = to_trend_windows(overall.iloc[begin : begin + chunk])
            self.views.add_trend_windows(windows, publish=publish)
            self.views.flush()
            written += len(windows)
        return written

    def _write_history(self, trends: pd.DataFrame, chunk: int) -> None:
        starts = (trends["window_start"].to_numpy(dtype="int64") // 1000).tolist()
        series = zip(trends["window"], trends["coin"], trends["source"], strict=True)
        members = history_members(trends)
        for (window, coin, source), start, member in zip(series, starts, members, strict=True):
            self.views.add_history_point(str(window), str(coin), str(source), start, member)
            if self.views.pending >= chunk:
                self.views.flush()
        self.views.flush()

    def replace_history(self, trends: pd.DataFrame, lo_ms: int, hi_ms: int) -> None:
        """Backfill: each series' points in [lo, hi] become exactly the given rows (atomically per series)."""
        if trends.empty:
            return
        ordered = trends.sort_values(["window", "coin", "source"], kind="stable")
        members = history_members(ordered)
        starts = (ordered["window_start"].to_numpy(dtype="int64") // 1000).tolist()
        windows, coins, sources = (
            ordered[col].astype(str).to_numpy() for col in ("window", "coin", "source")
        )
        for runs in _grouped_runs(_run_bounds(windows, coins, sources)):  # a run: one series
            self.views.replace_history(
                lo_ms // 1000,
                hi_ms // 1000,
                (
                    (
                        str(windows[begin]),
                        str(coins[begin]),
                        str(sources[begin]),
                        dict(zip(members[begin:end], starts[begin:end], strict=True)),
                    )
                    for begin, end in runs
                ),
            )
            self.views.flush()

    def drop_stale(self, trends: pd.DataFrame, windows: Iterable[str], lo_ms: int, hi_ms: int) -> int:
        """Backfill: remove ``trend:ts`` windows in [lo, hi] that the recomputation no longer has."""
        overall = trends[trends["source"] == "all"]
        keep = {
            (w, c): set(g["window_start"].astype("int64") // 1000)
            for (w, c), g in overall.groupby(["window", "coin"])
        }
        removed = 0
        lo, hi = lo_ms // 1000, hi_ms // 1000
        for window in windows:
            prefix = self.keys.trend_ts(window, "")
            for key in self.client.scan_iter(match=f"{prefix}*", count=500):
                name = _text(key)
                coin = name[len(prefix) :]
                wanted = keep.get((window, coin), set())
                stale = [
                    score
                    for _member, score in self.client.zrangebyscore(name, lo, hi, withscores=True)
                    if int(score) not in wanted
                ]
                self.views.remove_trend_windows(window, coin, stale)
                removed += len(stale)
        self.views.flush()
        return removed


def _run_bounds(*keys: np.ndarray) -> list[int]:
    """Row offsets of a sorted frame where any of ``keys`` (its columns) changes, with 0 and
    the length: rows ``bounds[i]:bounds[i + 1]`` are one run, i.e. one group."""
    changed = np.zeros(max(len(keys[0]) - 1, 0), dtype=bool)
    for key in keys:
        changed |= key[1:] != key[:-1]
    return [0, *(np.flatnonzero(changed) + 1).tolist(), len(keys[0])]


def _grouped_runs(bounds: list[int], rows: int = _ROWS_PER_CALL) -> Iterator[list[tuple[int, int]]]:
    """The runs of ``bounds`` (:func:`_run_bounds`) as ``(begin, end)`` pairs, in groups of
    whole runs holding about ``rows`` rows: one group is one script call."""
    group: list[tuple[int, int]] = []
    for begin, end in itertools.pairwise(bounds):
        group.append((begin, end))
        if end - group[0][0] >= rows:
            yield group
            group = []
    if group:
        yield group


def _within_retention(frame: pd.DataFrame, newest_of: list[str]) -> pd.DataFrame:
    """Rows no further than their window size's retention below the newest ``window_start``
    of their ``newest_of`` group."""
    if frame.empty:
        return frame
    newest = frame.groupby(newest_of)["window_start"].transform("max")
    retention_ms = frame["window"].map({w.value: s * 1000 for w, s in RETENTION_SECONDS.items()})
    return frame[frame["window_start"] >= newest - retention_ms]


def within_retention(trends: pd.DataFrame) -> pd.DataFrame:
    """The windows Redis would keep: each series' (window, coin, source) windows no further
    than its retention below the series' newest one in ``trends``.

    Redis trims every series from its newest window (``RETENTION_SECONDS``: a day of 1m
    windows, a week of 5m ones), so an older window would be trimmed as soon as it was
    written: a 30-day backfill wrote ~9x more windows than Redis kept. Every series keeps
    at least its newest window, so each one's history and views are still replaced.
    """
    return _within_retention(trends, ["window", "coin", "source"])


def components_within_retention(components: pd.DataFrame) -> pd.DataFrame:
    """Whole windows of ``components`` (every coin and source of one window's hash) no
    further than the window size's retention below its newest window here; older hashes
    would only wait out their TTL (the retention) unread."""
    return _within_retention(components, ["window"])


def history_members(trends: pd.DataFrame) -> list[str]:
    """The series-history member of every trend row: compact JSON of start (ms), volume,
    weighted score and price return, built column by column (a backfill writes ~10^5);
    the same text as ``json.dumps`` of that dict with compact separators."""
    starts = trends["window_start"].to_numpy(dtype="int64").tolist()
    volumes = trends["volume"].to_numpy(dtype="int64").tolist()
    scores = _json_floats(trends["weighted_score"])
    returns = _json_floats(trends["price_return"])
    return [
        f'{{"t":{t},"v":{v},"w":{w},"r":{r}}}'
        for t, v, w, r in zip(starts, volumes, scores, returns, strict=True)
    ]


def _json_floats(column: pd.Series) -> list[str]:
    """A float column as JSON numbers, missing values as ``null`` (``json.dumps`` spelling:
    ``repr`` of the float, ``Infinity`` for infinities)."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64").tolist()
    return ["null" if v != v else repr(v) if math.isfinite(v) else json.dumps(v) for v in values]


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _window_ms(window: str) -> int:
    return WINDOW_SECONDS[WindowSize(window)] * 1000


def rows_to_records(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Spark Rows (or dicts) of :func:`aggregate_windows` -> plain dicts."""
    out = []
    for row in rows:
        rec = row.asDict() if hasattr(row, "asDict") else dict(row)
        out.append({k: rec.get(k) for k in (*KEY_COLUMNS, *MEASURES)})
    return out
