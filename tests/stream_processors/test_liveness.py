"""Crash-restart guard: wait out a crashed predecessor's group session, never a clean one's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cryptopulse.settings import load_settings
from stream_processors.liveness import (
    HEARTBEAT_INTERVAL_S,
    clear_heartbeat,
    heartbeat_file,
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
