"""``cryptopulse status`` and ``logs`` say what supervision knows, and how to fix what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import console
from cryptopulse.cli.platform import _print_status
from cryptopulse.platform.manager import ServiceStatus, SupervisorStatus

pytestmark = pytest.mark.unit


def _status(name: str, **fields: object) -> ServiceStatus:
    base: dict[str, object] = {
        "description": name,
        "up": True,
        "pid": 100,
        "port": 1000,
        "url": "http://127.0.0.1:1000",
        "version": "1",
        "managed": True,
    }
    return ServiceStatus(name=name, **{**base, **fields})  # type: ignore[arg-type]


def test_status_table_shows_supervision_restarts_and_fixes():
    statuses = [
        _status("kafka", state="RUNNING", restarts=2),
        _status(
            "redis",
            state="UNSUPERVISED",
            detail="runs without supervision: supervisord is not running; nothing restarts it after a "
            "crash. Fix: `cryptopulse down redis && cryptopulse up redis`",
        ),
        _status("api", up=False, pid=None, managed=False, state="FATAL", restarts=3, detail="gave up"),
    ]
    supervisor = SupervisorStatus(True, 42, Path("/h/run/supervisord.conf"), "")
    with console.capture() as captured:
        all_up = _print_status(statuses, supervisor)
    text = captured.get()
    assert not all_up
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ ")}
    assert "RUNNING" in lines["kafka"] and " 2 " in lines["kafka"]
    assert "UNSUPERVISED" in lines["redis"] and " - " in lines["redis"]
    assert "FATAL (gave up)" in lines["api"] and " 3 " in lines["api"]
    assert "runs without supervision" in lines["redis"] and "cryptopulse up redis`" in text
    assert "supervisorctl -c /h/run/supervisord.conf status" in text


def test_logs_shows_supervisords_own_log(tmp_path: Path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "supervisord.log").write_text("INFO spawned: 'kafka' with pid 7\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CRYPTOPULSE_")},
        "CRYPTOPULSE_HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "cryptopulse", "logs", "supervisord", "-n", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "spawned: 'kafka'" in result.stdout
