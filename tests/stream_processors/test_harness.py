"""The worker harness's failure report: a timed-out integration test shows where the worker is."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.stream_processors.harness import WorkerProcess


def test_a_running_workers_report_holds_its_log_and_its_threads_stacks(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("ready\nwaiting for the next batch\n")
    busy = (
        "import time\ndef waiting_on_the_model():\n    while True: time.sleep(0.05)\nwaiting_on_the_model()"
    )
    proc = subprocess.Popen([sys.executable, "-c", busy], start_new_session=True)
    worker = WorkerProcess(env={}, log_path=log, web_port=0, proc=proc)
    try:
        time.sleep(1.0)  # past the interpreter's start-up, so its frames can be read
        report = worker.diagnose()
    finally:
        proc.kill()
        proc.wait(10)
    assert "waiting for the next batch" in report
    assert "waiting_on_the_model" in report, report
    assert "exited" in worker.diagnose()
