"""The retraining service against the real Kafka: triggers from real offsets and alerts, runs
in child processes (a tiny stand-in for `cryptopulse train`, so a run takes a second), the
lock, cancellation and the metrics."""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.settings import Settings
from retraining.service import Metrics, Retrainer, RunBusy, Steps, run_lock
from retraining.triggers import Trigger, load_state
from tests.retraining.helpers import drift_alert, send_alerts, send_feedback, wait_for_topics, with_learning

pytestmark = pytest.mark.integration


def fake_steps(marker: Path, *, code: int = 0, sleep_s: float = 0.0, version: str | None = "7") -> Steps:
    """Steps of a run: one child that writes the trigger to ``marker``, prints the result line
    ``retrain evaluate`` would, and exits ``code`` (after ``sleep_s``)."""
    result = json.dumps({"version": version, "feedback": None, "promotion": None})

    def steps(trigger: Trigger, started: datetime) -> list[list[str]]:
        script = (
            "import sys, time; "
            f"open({str(marker)!r}, 'a').write({trigger.value!r} + '\\n'); "
            f"time.sleep({sleep_s}); "
            f"print('retrain-result ' + {result!r}); "
            f"sys.exit({code})"
        )
        return [[sys.executable, "-c", script]]

    return steps


def runs(metrics: Metrics, trigger: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "cryptopulse_retrain_runs_total", {"trigger": trigger, "outcome": outcome}
    )
    return value or 0.0


def test_feedback_past_the_threshold_starts_one_run(isolated_settings: Settings, tmp_path: Path) -> None:
    settings = with_learning(isolated_settings, tmp_path, retrain_feedback_labels=3)
    wait_for_topics(settings)
    marker = tmp_path / "ran"
    metrics = Metrics()
    retrainer = Retrainer(settings, steps=fake_steps(marker), metrics=metrics)

    send_feedback(settings, 2)  # before the first check: the baseline, never a run
    assert retrainer.tick() is None
    assert not marker.exists()
    send_feedback(settings, 2)
    _state, decision = retrainer.observe()
    assert decision.pending_labels == 2 and decision.fire is None
    send_feedback(settings, 1)
    result = retrainer.tick()

    assert result is not None
    assert (result.trigger, result.outcome, result.version) == (Trigger.FEEDBACK, "succeeded", "7")
    assert marker.read_text() == "feedback\n"
    assert runs(metrics, "feedback", "succeeded") == 1
    assert metrics.registry.get_sample_value("cryptopulse_retrain_last_run_timestamp_seconds")
    state = load_state(retrainer.state_file)
    assert state is not None and state.last_outcome == "succeeded" and state.last_version == "7"
    # the labels the run started with are consumed
    assert retrainer.tick() is None
    assert metrics.registry.get_sample_value("cryptopulse_retrain_pending_feedback_labels") == 0
    assert marker.read_text() == "feedback\n"


def test_sustained_drift_on_the_alerts_topic_starts_a_run(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    settings = with_learning(
        isolated_settings, tmp_path, retrain_drift_alerts=3, retrain_feedback_labels=10**6
    )
    wait_for_topics(settings)
    window = timedelta(seconds=settings.stream.drift_window_s)
    marker = tmp_path / "ran"
    retrainer = Retrainer(settings, steps=fake_steps(marker))
    assert retrainer.tick() is None  # baseline
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    # windows 1, 2 drifted (two signals in window 2), window 3 quiet, windows 4, 5 drifted
    alerts = [
        drift_alert("m/3", start + i * window, start + (i + 1) * window, signal)
        for i, signal in [(1, "labels"), (2, "labels"), (2, "confidence"), (4, "labels"), (5, "labels")]
    ]
    send_alerts(settings, alerts)
    _state, decision = retrainer.observe()
    assert decision.drift_streak == 2 and decision.fire is None
    send_alerts(settings, [drift_alert("m/3", start + 6 * window, start + 7 * window)])
    result = retrainer.tick()
    assert result is not None and result.trigger is Trigger.DRIFT
    assert marker.read_text() == "drift\n"
    state = load_state(retrainer.state_file)
    assert state is not None and state.drift_windows == []


def test_a_failed_run_keeps_the_labels_and_backs_off(isolated_settings: Settings, tmp_path: Path) -> None:
    settings = with_learning(isolated_settings, tmp_path, retrain_feedback_labels=1)
    wait_for_topics(settings)
    marker = tmp_path / "ran"
    metrics = Metrics()
    retrainer = Retrainer(settings, steps=fake_steps(marker, code=3), metrics=metrics)
    retrainer.tick()
    send_feedback(settings, 1)
    result = retrainer.tick()
    assert result is not None and result.outcome == "failed" and result.exit_code == 1
    assert runs(metrics, "feedback", "failed") == 1
    assert retrainer.tick() is None  # backing off, not a training loop
    _state, decision = retrainer.observe()
    assert decision.pending_labels == 1 and decision.backoff_until is not None


def test_one_run_at_a_time(isolated_settings: Settings, tmp_path: Path) -> None:
    settings = with_learning(isolated_settings, tmp_path)
    wait_for_topics(settings)
    retrainer = Retrainer(settings, steps=fake_steps(tmp_path / "ran"))
    with run_lock(retrainer.lock_path), pytest.raises(RunBusy):
        retrainer.run(Trigger.MANUAL)
    assert not (tmp_path / "ran").exists()
    assert retrainer.run(Trigger.MANUAL).outcome == "succeeded"


def test_a_stop_cancels_the_training_child(isolated_settings: Settings, tmp_path: Path) -> None:
    settings = with_learning(isolated_settings, tmp_path)
    wait_for_topics(settings)
    marker = tmp_path / "ran"
    metrics = Metrics()
    retrainer = Retrainer(settings, steps=fake_steps(marker, sleep_s=120), metrics=metrics)
    results = []
    runner = threading.Thread(target=lambda: results.append(retrainer.run(Trigger.MANUAL)))
    runner.start()
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the child never started"
    child = retrainer._child
    assert child is not None
    assert metrics.registry.get_sample_value("cryptopulse_retrain_run_in_progress") == 1
    began = time.monotonic()
    retrainer.request_stop()
    runner.join(timeout=30)
    assert not runner.is_alive()
    assert time.monotonic() - began < 10
    assert results[0].outcome == "cancelled" and results[0].exit_code == 130
    assert child.poll() is not None
    state = load_state(retrainer.state_file)
    assert state is not None and state.last_outcome == "cancelled"


def test_the_teacher_profile_trains_the_teacher_then_the_student_it_teaches() -> None:
    from retraining.service import training_steps

    teacher, student = training_steps("teacher")
    assert teacher[-4:] == ["train", "--profile", "teacher", "--no-progress"]
    assert student[-4:] == ["train", "--profile", "distill", "--no-progress"]
    [fast] = training_steps("fast")
    assert fast[-2:] == ["train", "--no-progress"] and "--profile" not in fast
    assert training_steps("teacher", ["elsewhere", "train"]) == [["elsewhere", "train"]]
