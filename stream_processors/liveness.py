"""Liveness of the stream worker: the crash-restart guard and the stall watchdog.

Crash-restart guard: a worker restarted soon after a crash waits out the dead one's session.

A worker killed without leaving its consumer group (SIGKILL, OOM, power loss) stays a
group member until the broker's session timeout expires. A replacement that joins before
that can be left idle by faust's second rebalance (docs/stream-processing.md, "Restart after
a crash"). So every running worker touches a heartbeat file (one per web port under
``home/faust``) and removes it on a clean shutdown; a worker that finds a fresh heartbeat
at start knows its predecessor died within the session timeout and sleeps until the
broker has expired it. A clean restart, or one long after the crash, does not wait.

Stall watchdog: faust occasionally leaves a restarted worker idle with a backlog in front of
it (docs/stream-processing.md, "Restart after a crash"); a graceful restart clears it. So
the worker watches its own source partitions (:class:`StallWatch`) and, when one has had
records waiting and made no progress for ``stream.stall_timeout_s``, stops gracefully
(offsets committed, group left) and replaces itself with a fresh copy of the same command
(:func:`restart_if_stalled`): the same pid, so ``cryptopulse down`` and supervisors still
see one process.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Generic, TypeVar

import structlog

from core.settings import Settings

log = structlog.get_logger(__name__)

HEARTBEAT_INTERVAL_S = 2.0


def heartbeat_file(settings: Settings) -> Path:
    return settings.home / "faust" / f"worker-{settings.stream.web_port}.heartbeat"


def touch_heartbeat(settings: Settings) -> None:
    path = heartbeat_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time():.3f}\n", "utf-8")


def clear_heartbeat(settings: Settings) -> None:
    heartbeat_file(settings).unlink(missing_ok=True)


def wait_for_previous_session(
    settings: Settings,
    *,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Sleep until a crashed predecessor's group session has expired; returns the seconds slept."""
    path = heartbeat_file(settings)
    try:
        last_beat = path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
    expires = last_beat + HEARTBEAT_INTERVAL_S + settings.stream.session_timeout_s + 1.0
    remaining = expires - now()
    if remaining <= 0:
        return 0.0
    log.warning(
        "previous worker stopped without leaving its consumer group; waiting for its session to expire",
        heartbeat=str(path),
        seconds=round(remaining, 1),
    )
    sleep(remaining)
    return remaining


STALL_RESTARTS_ENV = "CRYPTOPULSE_WORKER_STALL_RESTARTS"
Partition = TypeVar("Partition", bound=Hashable)


class StallWatch(Generic[Partition]):
    """Source partitions that have had a backlog and no progress for ``timeout_s``.

    ``update`` takes, per assigned partition, its lag and a progress marker (what the
    worker has read and processed). A partition's clock starts when it shows a backlog
    and restarts whenever its marker changes; a partition without a backlog, or no longer assigned, is
    forgotten. ``reset`` restarts every clock (rebalances and model loads are expected
    pauses, not stalls).
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._waiting: dict[Partition, tuple[Hashable, float]] = {}  # tp -> (progress, since)

    def reset(self) -> None:
        self._waiting.clear()

    def update(self, observed: Mapping[Partition, tuple[int, Hashable]], now: float) -> list[Partition]:
        """Partitions stalled for ``timeout_s`` or more, given ``{tp: (lag, progress)}``."""
        if self.timeout_s <= 0:
            return []
        waiting: dict[Partition, tuple[Hashable, float]] = {}
        for tp, (lag, progress) in observed.items():
            if lag <= 0:
                continue
            previous = self._waiting.get(tp)
            waiting[tp] = previous if previous is not None and previous[0] == progress else (progress, now)
        self._waiting = waiting
        return [tp for tp, (_, since) in waiting.items() if now - since >= self.timeout_s]


def stall_restarts() -> int:
    """How many times this worker has restarted itself after a stall (0 in a fresh one)."""
    try:
        return int(os.environ.get(STALL_RESTARTS_ENV, "0"))
    except ValueError:
        return 0


def request_graceful_stop() -> None:
    """Ask this process's faust worker to stop as on ``cryptopulse down`` (SIGTERM)."""
    os.kill(os.getpid(), signal.SIGTERM)


def restart_if_stalled(stalled: bool, *, execv: Callable[[str, list[str]], object] = os.execv) -> None:
    """After faust stopped because of a stall, replace this process with a fresh copy of itself.

    Returns (doing nothing) when the worker stopped for any other reason.
    """
    if not stalled:
        return
    restarts = stall_restarts() + 1
    os.environ[STALL_RESTARTS_ENV] = str(restarts)
    log.warning("restarting the stalled worker", restarts=restarts, argv=sys.orig_argv)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    execv(sys.executable, list(sys.orig_argv))
