"""The stream worker's tables: tumbling windows kept in memory, durable through their changelogs.

* ``dedup``: ``id:``/``hash:`` key -> the origin that claimed it (clean agent);
* ``scored``: source id -> model version, written once the broker acked the scored record
  (score agent: a replayed id found here is skipped);
* ``counts_1m``, ``counts_5m``: coin -> ``[volume, score_sum]`` per window (count agent);
* ``counted``: ``coin|source_id`` -> claimed, once a post was counted for a coin (count agent:
  a redelivered count record found here is skipped).

The three claim tables are :class:`BatchedClaims`: claims are looked up in memory and reach
the changelog a flush at a time (one record per window and partition, not one per claim).

A table write goes to the changelog partition of the *current* event; the agents update
tables for a whole batch, so they make each record's event current first
(:func:`use_event`). The count agent reads the counts topic, keyed by coin, so a coin's
counters and claims always live on the coin's partition: one worker owns them, and a
rebalance hands them over whole (see :mod:`stream_processors.agents.counts`).
"""

from __future__ import annotations

import uuid
import weakref
from dataclasses import dataclass
from typing import Any

import faust
from faust.streams import _current_event, current_event  # set per event when updating tables from a batch
from faust.types import EventT

from core.settings import Settings

COUNTER_WINDOWS: dict[str, int] = {"1m": 60, "5m": 300}
"""Counter window name -> size in seconds."""


def use_event(event: EventT) -> None:
    """Make ``event`` the current one, so table writes go to its changelog partition."""
    _current_event.set(weakref.ref(event))


class BatchedClaims:
    """:class:`~stream_processors.processing.DedupStore` whose changelog gets one record per
    flush, window and partition (every claim made since the last flush), not one per claim.

    A claim is looked up in memory at once; :meth:`flush` makes the claims durable. Each
    record of a windowed faust table is a produce to its changelog, and at one per claim
    (5.3 per event across ``dedup``, ``scored`` and ``counted``) they cost ~0.45 ms of the
    worker's ~2.7 ms of CPU per event (docs/benchmarks.md). Here a flush of one agent batch
    writes one table key per (window, partition): ``topic:partition:offset`` of the group's
    last event (and this process) -> ``{claim key: origin}``, on that event's changelog
    partition, so a partition's claims travel with it on a rebalance exactly as before.
    After a recovery the lookup index is rebuilt from the table (old one-claim-per-key
    records included).

    A key counts as claimed when it is in the window of the current event's timestamp or
    the one before, so the horizon is between one and two windows; windows two behind the
    newest are dropped from the index, and the table expires its own.
    """

    def __init__(self, table: Any, window_s: float) -> None:
        self.table = table  # a tumbling WindowWrapper: flush key -> {claim key: origin}
        self.window_s = window_s
        self._index: dict[float, dict[str, str]] = {}  # window start -> claim key -> origin
        self._pending: dict[tuple[float, int], tuple[EventT, dict[str, str]]] = {}
        self._newest = float("-inf")
        # Flush keys name this process too: a batch redelivered after a restart can end on the
        # same event with other claims, and must not overwrite the earlier record.
        self._process = uuid.uuid4().hex[:8]
        table.on_recover(self._on_recover)

    def _window(self, event: EventT) -> float:
        timestamp = float(event.message.timestamp)
        return timestamp - timestamp % self.window_s

    def claimed_by(self, key: str) -> str | None:
        start = self._window(_event_now())
        for window in (start, start - self.window_s):
            origin = self._index.get(window, {}).get(key)
            if origin:
                return origin
        return None

    def claim(self, key: str, origin: str) -> None:
        event = _event_now()
        start = self._window(event)
        self._index.setdefault(start, {})[key] = origin
        slot = (start, event.message.partition)
        _, claims = self._pending.get(slot, (event, {}))
        claims[key] = origin
        self._pending[slot] = (event, claims)
        if start > self._newest:
            self._newest = start
            self._expire()

    @property
    def pending(self) -> int:
        """Claims made since the last flush."""
        return sum(len(claims) for _, claims in self._pending.values())

    def flush(self) -> int:
        """Write the pending claims: one table key (one changelog record) per window and
        partition; returns how many. Call it where no rebalance can fall between the claims
        and the flush (no ``await`` in between), or on a short timer."""
        pending, self._pending = self._pending, {}
        for event, claims in pending.values():
            use_event(event)
            msg = event.message
            self.table[f"{msg.topic}:{msg.partition}:{msg.offset}:{self._process}"] = claims
        return len(pending)

    def _expire(self) -> None:
        for window in [w for w in self._index if w < self._newest - self.window_s]:
            del self._index[window]

    def reload(self) -> None:
        """Merge every claim the table holds into the index (after a recovery)."""
        for stored_key, value in list(self.table.table.data.items()):
            key, window_range = stored_key
            start = float(window_range[0])
            if isinstance(value, dict):
                self._index.setdefault(start, {}).update(value)
            elif value:  # a record from before claims were batched: claim key -> origin
                self._index.setdefault(start, {})[key] = str(value)
            self._newest = max(self._newest, start)
        self._expire()

    async def _on_recover(self) -> None:
        self.reload()


def _event_now() -> EventT:
    event = current_event()
    if event is None:
        raise RuntimeError("a claim is made or looked up for the current event: none is set")
    return event


@dataclass(frozen=True)
class StreamTables:
    """One app's tables (names, and so changelog topics, are part of the worker's state)."""

    dedup: BatchedClaims
    scored: BatchedClaims
    counters: dict[str, Any]  # COUNTER_WINDOWS name -> windowed table
    counted: BatchedClaims

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> StreamTables:
        window = float(settings.stream.dedup_window_s)
        dedup = app.Table("dedup", default=dict, help="flush -> {id:/hash: key: origin that claimed it}")
        scored = app.Table("scored", default=dict, help="flush -> {source_id: model version, once acked}")
        counted = app.Table("counted", default=dict, help="flush -> {coin|source_id: counted}")
        return cls(
            dedup=BatchedClaims(dedup.tumbling(window, expires=2 * window), window),
            scored=BatchedClaims(scored.tumbling(window, expires=2 * window), window),
            counters={
                name: app.Table(
                    f"counts_{name}", default=list, help=f"coin -> [volume, score_sum] per {name}"
                ).tumbling(size, expires=10 * size)
                for name, size in COUNTER_WINDOWS.items()
            },
            counted=BatchedClaims(counted.tumbling(window, expires=2 * window), window),
        )
