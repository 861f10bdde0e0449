"""In-memory tumbling windows keyed by a name (source, model version), for the monitors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Generic, TypeVar

C = TypeVar("C")


class TumblingWindows(Generic[C]):
    """``size_s``-second windows of a counts object per key; closed ones are popped once.

    Used by the data-quality and drift monitors, whose counts are monitoring only (the
    durable record is Kafka), so they live in memory rather than in a changelogged table.
    """

    def __init__(self, size_s: int, factory: Callable[[], C]) -> None:
        self.size_s = size_s
        self._factory = factory
        self._windows: dict[tuple[str, float], C] = {}

    def at(self, key: str, now: float) -> C:
        """The counts of ``key``'s window that contains ``now`` (created empty)."""
        start = now - now % self.size_s
        counts = self._windows.get((key, start))
        if counts is None:
            counts = self._windows[(key, start)] = self._factory()
        return counts

    def pop_closed(self, now: float) -> list[tuple[str, datetime, datetime, C]]:
        """``(key, start, end, counts)`` of every window that ended by ``now``, in order (UTC)."""
        closed = sorted(k for k in self._windows if k[1] + self.size_s <= now)
        return [
            (
                key,
                datetime.fromtimestamp(start, UTC),
                datetime.fromtimestamp(start + self.size_s, UTC),
                self._windows.pop((key, start)),
            )
            for key, start in closed
        ]
