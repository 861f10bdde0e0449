"""A service whose parent was SIGKILLed leaves children holding its port (``mlflow server``
and its uvicorn child): the start shim stops them before the service starts again."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from core.settings import load_settings
from cryptopulse.platform.ownership import OWNER_ENV, owner_marker
from cryptopulse.platform.services import MlflowService, RedisService
from cryptopulse.platform.supervisor import Supervisor

pytestmark = pytest.mark.unit

# A parent that starts a long-lived child (inheriting the marker), prints its pid and waits.
PARENT = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(300)\n"
)


def _orphaned_child(marker: str) -> psutil.Process:
    """Start PARENT with ``marker``, SIGKILL it, and return its surviving child."""
    env = {**os.environ, OWNER_ENV: marker}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=env, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = psutil.Process(int(parent.stdout.readline()))
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    assert child.is_running(), "the child outlives its SIGKILLed parent"
    return child


def test_the_shim_stops_the_services_orphans_and_becomes_the_service(tmp_path: Path) -> None:
    home, other = tmp_path / "home", tmp_path / "other-home"
    ours = _orphaned_child(owner_marker(home, "mlflow"))
    theirs = _orphaned_child(owner_marker(other, "mlflow"))  # another home's: never touched
    try:
        shim = [sys.executable, "-m", "cryptopulse.platform.orphans", str(home), "mlflow", "--"]
        env = {**os.environ, OWNER_ENV: owner_marker(home, "mlflow")}  # the shim carries it too
        done = subprocess.run(
            [*shim, "/bin/sh", "-c", "echo started $$"], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("started "), done.stdout
        deadline = time.monotonic() + 10
        while ours.is_running() and ours.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not ours.is_running() or ours.status() == psutil.STATUS_ZOMBIE
        assert theirs.is_running()
        assert str(ours.pid) in done.stderr  # it says what it stopped
    finally:
        for process in (ours, theirs):
            if process.is_running():
                process.kill()


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cryptopulse.platform.orphans", str(tmp_path), "mlflow"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "usage" in done.stderr


def test_mlflow_starts_through_the_shim_and_redis_does_not(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    supervisor = Supervisor(settings)
    mlflow = supervisor.program_config(MlflowService(settings), {}, tmp_path)
    command = next(line for line in mlflow.splitlines() if line.startswith("command"))
    argv = shlex.split(command.split("=", 1)[1])
    assert argv[1:6] == ["-m", "cryptopulse.platform.orphans", str(tmp_path), "mlflow", "--"]
    assert argv[6:9] == [sys.executable, "-m", "mlflow"]
    redis = supervisor.program_config(RedisService(settings), {}, tmp_path)
    assert "cryptopulse.platform.orphans" not in redis
