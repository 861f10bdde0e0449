"""Caps on open Server-Sent Event streams: in total and per caller, per worker process.

Each stream holds a Redis pub/sub connection and a task for as long as it is open, so
an unlimited number of them is an easy way to exhaust a worker. The counts live in the
process (one event loop, no lock needed), so a crashed worker cannot leak a slot the
way a counter in Redis could; with ``api.workers`` processes the caps apply per worker.
"""

from __future__ import annotations

from collections import Counter

from api.metrics import SSE_CLIENTS
from api.problems import ProblemError

RETRY_AFTER_S = 5
"""Suggested wait before reconnecting when the caps are reached."""


class StreamSlot:
    """One open stream's place; :meth:`release` is idempotent (called when the response ends)."""

    def __init__(self, slots: StreamSlots, caller: str) -> None:
        self._slots = slots
        self.caller = caller
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release(self.caller)


class StreamSlots:
    """Open streams of this worker, at most ``max_total`` and ``max_per_caller`` per caller."""

    def __init__(self, max_total: int, max_per_caller: int) -> None:
        self.max_total = max_total
        self.max_per_caller = max_per_caller
        self._open: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return self._open.total()

    def open_for(self, caller: str) -> int:
        return self._open[caller]

    def acquire(self, caller: str) -> StreamSlot:
        """A slot for ``caller``; 429 with Retry-After when either cap is reached."""
        if self.total >= self.max_total:
            raise _too_many(f"this server has its maximum of {self.max_total} open streams")
        if self._open[caller] >= self.max_per_caller:
            raise _too_many(f"client {caller} already has its maximum of {self.max_per_caller} open streams")
        self._open[caller] += 1
        SSE_CLIENTS.inc()
        return StreamSlot(self, caller)

    def _release(self, caller: str) -> None:
        self._open[caller] -= 1
        if self._open[caller] <= 0:
            del self._open[caller]
        SSE_CLIENTS.dec()


def _too_many(detail: str) -> ProblemError:
    return ProblemError(
        429,
        "Too many streams",
        f"{detail}; close one or retry after {RETRY_AFTER_S}s",
        slug="too-many-streams",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
