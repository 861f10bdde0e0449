"""``cryptopulse retrain`` as people and supervisord run it: real processes, real Kafka and
MLflow, a stand-in training command (``--train-command``) so a run takes seconds."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from retraining.triggers import load_state
from tests.ports import free_port
from tests.retraining.helpers import send_feedback, wait_for_topics

pytestmark = pytest.mark.integration


def cli_env(settings: Settings, home: Path, **learning: str) -> dict[str, str]:
    env = {
        **os.environ,
        "CRYPTOPULSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "CRYPTOPULSE_HOME": str(home),
        # a registered model no one else writes: `retrain evaluate` must find no new version
        "CRYPTOPULSE_MLFLOW__REGISTERED_MODEL": f"test-retrain-{uuid.uuid4().hex[:8]}",
        "COLUMNS": "200",
    }
    env.update({f"CRYPTOPULSE_LEARNING__{key.upper()}": value for key, value in learning.items()})
    return env


def retrain(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptopulse", "retrain", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_status_reports_every_trigger_without_writing_state(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    wait_for_topics(isolated_settings)
    result = retrain(cli_env(isolated_settings, tmp_path, retrain_feedback_labels="5"), "status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["would_fire"] is None
    assert report["feedback"] == {"pending": 0, "threshold": 5}
    assert report["schedule"]["cron"] == "0 3 * * 1" and report["schedule"]["due"] is False
    assert report["drift"]["streak"] == 0
    assert not (tmp_path / "retraining" / "state.json").exists()


def test_a_bad_schedule_exits_2_naming_the_setting(isolated_settings: Settings, tmp_path: Path) -> None:
    result = retrain(cli_env(isolated_settings, tmp_path, retrain_schedule="every monday"), "status")
    assert result.returncode == 2
    assert "learning.retrain_schedule" in result.stderr


def test_run_exit_code_is_the_outcome(isolated_settings: Settings, tmp_path: Path) -> None:
    env = cli_env(isolated_settings, tmp_path)
    failed = retrain(env, "run", "--train-command", f"{sys.executable} -c 'raise SystemExit(3)'")
    assert failed.returncode == 1, failed.stderr
    assert "run failed" in failed.stdout
    missing = retrain(env, "run", "--train-command", str(tmp_path / "no-such-trainer"))
    assert missing.returncode == 1 and "run failed" in missing.stdout
    # success: the stand-in trains, then the real `retrain evaluate` asks MLflow for new versions
    done = retrain(env, "run", "--train-command", f"{sys.executable} -c 'print(42)'")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run succeeded" in done.stdout and "none registered" in done.stdout
    state = load_state(tmp_path / "retraining" / "state.json")
    assert state is not None and state.runs == 3 and state.last_outcome == "succeeded"
    logs = sorted((tmp_path / "retraining" / "runs").glob("*-manual.log"))
    assert logs and '"version": null' in logs[-1].read_text()


def scrape(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text


def test_serve_trains_on_feedback_and_a_sigterm_cancels_the_run(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    wait_for_topics(isolated_settings)
    port = free_port()
    marker = tmp_path / "training"
    train = f"{sys.executable} -c " + shlex.quote(f"import time; open({str(marker)!r}, 'w'); time.sleep(120)")
    env = cli_env(isolated_settings, tmp_path, retrain_feedback_labels="2")
    service = subprocess.Popen(
        [
            *(sys.executable, "-m", "cryptopulse", "retrain", "serve", "--metrics-port", str(port)),
            *("--check-interval", "0.5", "--train-command", train),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            try:
                text = scrape(port)
                if "cryptopulse_retrain_last_check_timestamp_seconds " in text:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert "cryptopulse_retrain_next_scheduled_run_timestamp_seconds" in text
        assert not marker.exists(), "the service trained on start-up"
        send_feedback(isolated_settings, 2)
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "feedback past the threshold started no run"
        assert "cryptopulse_retrain_run_in_progress 1.0" in scrape(port)
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
    assert service.returncode == 0, output
    assert "retraining service stopped" in output
    state = load_state(tmp_path / "retraining" / "state.json")
    assert state is not None and state.last_trigger == "feedback" and state.last_outcome == "cancelled"
