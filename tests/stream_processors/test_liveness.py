"""Crash-restart guard (wait out a crashed predecessor's session, never a clean one's) and the
stall watchdog (a backlog that does not move restarts the worker)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from core.settings import load_settings
from stream_processors.liveness import (
    HEARTBEAT_INTERVAL_S,
    STALL_RESTARTS_ENV,
    StallWatch,
    clear_heartbeat,
    heartbeat_file,
    restart_if_stalled,
    stall_restarts,
    touch_heartbeat,
    wait_for_previous_session,
)

pytestmark = pytest.mark.unit


def test_waits_only_after_an_unclean_stop(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, stream={"session_timeout_s": 10, "web_port": 6071})
    slept: list[float] = []
    assert wait_for_previous_session(settings, sleep=slept.append) == 0.0  # first start ever

    touch_heartbeat(settings)  # a worker is running (then gets SIGKILLed: the file stays)
    beat = heartbeat_file(settings).stat().st_mtime
    assert heartbeat_file(settings).name == "worker-6071.heartbeat"
    waited = wait_for_previous_session(settings, now=lambda: beat + 3.0, sleep=slept.append)
    assert waited == pytest.approx(HEARTBEAT_INTERVAL_S + 10 + 1 - 3.0) and slept == [waited]

    # long after the crash the broker has expired the member already: no wait
    assert wait_for_previous_session(settings, now=lambda: beat + 60, sleep=slept.append) == 0.0
    # a clean stop removes the heartbeat: no wait either
    clear_heartbeat(settings)
    assert wait_for_previous_session(settings, now=lambda: beat, sleep=slept.append) == 0.0
    assert len(slept) == 1


def test_heartbeats_are_per_worker_port(tmp_path: Path) -> None:
    first = load_settings(home=tmp_path, stream={"web_port": 6066})
    second = load_settings(home=tmp_path, stream={"web_port": 6067})
    touch_heartbeat(first)
    slept: list[float] = []
    assert wait_for_previous_session(second, sleep=slept.append) == 0.0 and not slept
    os.utime(heartbeat_file(first), (0, 0))  # a heartbeat from 1970: stale
    assert wait_for_previous_session(first, sleep=slept.append) == 0.0


def test_stall_watch_flags_only_a_backlog_that_does_not_move() -> None:
    watch: StallWatch[str] = StallWatch(timeout_s=60)
    assert watch.update({"clean-0": (500, None), "raw-0": (0, 41)}, now=0) == []
    assert watch.update({"clean-0": (500, None), "raw-0": (0, 41)}, now=59) == []
    assert watch.update({"clean-0": (800, None), "raw-0": (0, 99)}, now=60) == ["clean-0"]
    # progress restarts the clock; a partition without backlog is never stalled
    assert watch.update({"clean-0": (700, 100), "raw-0": (0, 99)}, now=61) == []
    assert watch.update({"clean-0": (700, 150), "raw-0": (0, 99)}, now=130) == []
    assert watch.update({"clean-0": (900, 150)}, now=189) == []
    assert watch.update({"clean-0": (900, 150)}, now=190) == ["clean-0"]
    # caught up, then a new backlog: a fresh clock
    assert watch.update({"clean-0": (0, 900)}, now=191) == []
    assert watch.update({"clean-0": (5, 900)}, now=200) == []
    # expected pauses (rebalance, model load) reset every clock
    watch.reset()
    assert watch.update({"clean-0": (5, 900)}, now=259) == []
    assert watch.update({"clean-0": (5, 900)}, now=320) == ["clean-0"]


def test_stall_watch_off_at_zero() -> None:
    watch: StallWatch[str] = StallWatch(timeout_s=0)
    assert watch.update({"clean-0": (5, None)}, now=0) == []
    assert watch.update({"clean-0": (5, None)}, now=10_000) == []


def test_a_stalled_worker_replaces_itself_with_the_same_command(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.delenv(STALL_RESTARTS_ENV, raising=False)
    restart_if_stalled(False, execv=lambda path, argv: calls.append((path, argv)))
    assert calls == []  # stopped for any other reason: nothing happens

    restart_if_stalled(True, execv=lambda path, argv: calls.append((path, argv)))
    restart_if_stalled(True, execv=lambda path, argv: calls.append((path, argv)))
    assert calls == [(sys.executable, list(sys.orig_argv))] * 2
    assert os.environ[STALL_RESTARTS_ENV] == "2"  # counted across the restarts (inherited)
    assert stall_restarts() == 2  # what the restarted worker reports as a gauge
