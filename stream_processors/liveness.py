"""Crash-restart guard: a worker restarted soon after a crash waits out the dead one's session.

A worker killed without leaving its consumer group (SIGKILL, OOM, power loss) stays a
group member until the broker's session timeout expires. A replacement that joins before
that can be left idle by faust's second rebalance (docs/stream-processing.md, "Restart after
a crash"). So every running worker touches a heartbeat file (one per web port under
``home/faust``) and removes it on a clean shutdown; a worker that finds a fresh heartbeat
at start knows its predecessor died within the session timeout and sleeps until the
broker has expired it. A clean restart, or one long after the crash, does not wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import structlog

from cryptopulse.settings import Settings

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
