"""The worker harness's failure report: a timed-out integration test shows where the worker is."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.stream_processors.harness import WorkerProcess

WAITING = """
import pathlib, sys, time
def waiting_on_the_model():
    pathlib.Path(sys.argv[1]).write_text("inside")
    while True:
        time.sleep(0.05)
waiting_on_the_model()
"""


def test_a_running_workers_report_holds_its_log_and_its_threads_stacks(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("ready\nwaiting for the next batch\n")
    marker = tmp_path / "inside"
    proc = subprocess.Popen([sys.executable, "-c", WAITING, str(marker)], start_new_session=True)
    worker = WorkerProcess(env={}, log_path=log, web_port=0, proc=proc)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():  # the frame to find exists once the marker does
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        report = worker.diagnose()
    finally:
        proc.kill()
        proc.wait(10)
    assert "waiting for the next batch" in report
    if "Permission denied" in report or "Operation not permitted" in report:
        pytest.skip("py-spy may not read another process here (ptrace restricted)")
    assert "waiting_on_the_model" in report, report
    assert "exited" in worker.diagnose()
