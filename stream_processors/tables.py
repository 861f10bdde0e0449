"""The stream worker's tables: tumbling windows kept in memory, durable through their changelogs.

* ``dedup``: ``id:``/``hash:`` key -> the origin that claimed it (clean agent);
* ``scored``: source id -> model version, written once the broker acked the scored record
  (score agent: a replayed id found here is skipped);
* ``counts_1m``, ``counts_5m``: coin -> ``[volume, score_sum]`` per window (count agent);
* ``counted``: ``coin|source_id`` -> claimed, once a post was counted for a coin (count agent:
  a redelivered count record found here is skipped).

A table write goes to the changelog partition of the *current* event; the agents update
tables for a whole batch, so they make each record's event current first
(:func:`use_event`). The count agent reads the counts topic, keyed by coin, so a coin's
counters and claims always live on the coin's partition: one worker owns them, and a
rebalance hands them over whole (see :mod:`stream_processors.agents.counts`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import faust
from faust.streams import _current_event  # set per event when updating tables from a batch
from faust.types import EventT

from core.settings import Settings

COUNTER_WINDOWS: dict[str, int] = {"1m": 60, "5m": 300}
"""Counter window name -> size in seconds."""


def use_event(event: EventT) -> None:
    """Make ``event`` the current one, so table writes go to its changelog partition."""
    _current_event.set(weakref.ref(event))


class WindowedDedup:
    """:class:`~stream_processors.processing.DedupStore` over a tumbling faust table.

    A key counts as seen when it is in the current window or the previous one, so
    the horizon is between one and two windows; old windows expire with the table.
    """

    def __init__(self, table: Any, window_s: float) -> None:
        self.table = table
        self.window_s = window_s

    def claimed_by(self, key: str) -> str | None:
        windows = self.table[key]
        return windows.current() or windows.delta(self.window_s) or None

    def claim(self, key: str, origin: str) -> None:
        self.table[key] = origin


@dataclass(frozen=True)
class StreamTables:
    """One app's tables (names, and so changelog topics, are part of the worker's state)."""

    dedup: WindowedDedup
    scored: WindowedDedup
    counters: dict[str, Any]  # COUNTER_WINDOWS name -> windowed table
    counted: WindowedDedup

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> StreamTables:
        window = float(settings.stream.dedup_window_s)
        dedup = app.Table("dedup", default=str, help="id:/hash: key -> origin that claimed it")
        scored = app.Table("scored", default=str, help="source_id -> model version, once acked")
        counted = app.Table("counted", default=str, help="coin|source_id -> counted")
        return cls(
            dedup=WindowedDedup(dedup.tumbling(window, expires=2 * window), window),
            scored=WindowedDedup(scored.tumbling(window, expires=2 * window), window),
            counters={
                name: app.Table(
                    f"counts_{name}", default=list, help=f"coin -> [volume, score_sum] per {name}"
                ).tumbling(size, expires=10 * size)
                for name, size in COUNTER_WINDOWS.items()
            },
            counted=WindowedDedup(counted.tumbling(window, expires=2 * window), window),
        )
