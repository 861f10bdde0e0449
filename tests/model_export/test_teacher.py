"""``train --profile teacher`` on a tiny random encoder: checkpoints, interruption, resume, tracking."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

import model_export.cli as cli
from core.settings import Settings, load_settings
from model_export.teacher import (
    TEACHER_EXPERIMENT,
    TeacherConfig,
    TeacherInterrupted,
    run_teacher,
)
from tests.model_export.tiny import tiny_encoder

pytestmark = [pytest.mark.unit, pytest.mark.slow]

# 6 rows per dataset and split: 42 training rows (Financial PhraseBank and CryptoLin twice),
# 6 steps per epoch of 8, 12 steps in all.
TOTAL_STEPS = 12


class Crash(RuntimeError):
    """A hard stop between two checkpoints' worth of steps (power cut, OOM kill)."""


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("encoder"))


def _config(encoder: Path, **overrides: object) -> TeacherConfig:
    base: dict[str, object] = {
        "base_model": encoder,
        "limit_per_split": 6,
        "epochs": 2.0,
        "batch_size": 8,
        "micro_batch_size": 4,  # gradient accumulation over two micro-batches
        "max_length": 24,
        "checkpoint_every_s": 0.0,  # after every step
        "eval_batch_size": 16,
    }
    base.update(overrides)
    return TeacherConfig(**base)  # type: ignore[arg-type]


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(cache_dir=tmp_path / "cache", **overrides)


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    return load_file(str(model_dir / "model.safetensors"))


def test_interrupted_run_resumes_to_the_same_weights(encoder: Path, tmp_path: Path) -> None:
    settings, config = _settings(tmp_path), _config(encoder)

    def crash_at_5(step: int) -> None:
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        run_teacher(settings, config, track=False, progress=False, on_step=crash_at_5)
    (work,) = (settings.cache_dir / "training").glob("teacher-*")
    checkpoints = work / "checkpoints"
    kept = sorted(p.name for p in checkpoints.iterdir())  # the newest two; no half-written file
    assert kept == ["checkpoint-0000004.pt", "checkpoint-0000005.pt"]

    steps: list[int] = []
    resumed = run_teacher(settings, config, track=False, progress=False, on_step=steps.append)
    assert steps == list(range(6, TOTAL_STEPS + 1))
    assert resumed.work_dir == work
    assert not list(checkpoints.iterdir())  # the final weights replace the checkpoints
    assert resumed.metrics["train_steps"] == TOTAL_STEPS

    straight = run_teacher(settings, config, work_dir=tmp_path / "straight", track=False, progress=False)
    expected, got = _weights(straight.model_dir), _weights(resumed.model_dir)
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        np.testing.assert_allclose(got[name], tensor, atol=1e-6, err_msg=name)

    weights = resumed.model_dir / "model.safetensors"
    assert resumed.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    for key in ("test_weighted_f1", "test_ece", "cryptolin_teacher_weighted_f1", "validation_weighted_f1"):
        assert 0.0 <= resumed.metrics[key] <= 1.0, key
    predictions = np.load(work / "predictions.npz", allow_pickle=False)
    assert predictions["test_proba"].shape == (len(predictions["test_text"]), 3)


def test_sigterm_checkpoints_at_the_next_step_and_stops(encoder: Path, tmp_path: Path) -> None:
    settings, config = _settings(tmp_path), _config(encoder, checkpoint_every_s=3600.0)
    before = signal.getsignal(signal.SIGTERM)

    def terminate_at_3(step: int) -> None:
        if step == 3:
            signal.raise_signal(signal.SIGTERM)

    with pytest.raises(TeacherInterrupted) as stopped:
        run_teacher(settings, config, track=False, progress=False, on_step=terminate_at_3)
    assert stopped.value.step == 4 and stopped.value.total == TOTAL_STEPS
    assert stopped.value.checkpoint.name == "checkpoint-0000004.pt"
    assert sorted(p.name for p in stopped.value.checkpoint.parent.iterdir()) == ["checkpoint-0000004.pt"]
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.integration
def test_cli_resume_continues_one_mlflow_run_and_registers_nothing(
    encoder: Path, tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    settings = _settings(tmp_path, mlflow={"tracking_uri": mlflow_server})
    # what `train --profile teacher --limit-per-split 6 --epochs 2` runs: 2 steps per epoch of 32
    config = TeacherConfig(
        data_dir=settings.model.data_dir,
        seed=settings.model.seed,
        base_model=encoder,
        limit_per_split=6,
        epochs=2.0,
        checkpoint_every_s=0.0,
    )

    def crash_at_1(step: int) -> None:
        if step == 1:
            raise Crash

    with pytest.raises(Crash):
        run_teacher(settings, config, progress=False, on_step=crash_at_1)
    monkeypatch.setattr(cli, "_settings", lambda: settings)
    args = ["train", "--profile", "teacher", "--base-model", str(encoder), "--limit-per-split", "6"]
    out = CliRunner().invoke(cli.app, [*args, "--epochs", "2", "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "teacher weights:" in out.output

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name(TEACHER_EXPERIMENT)
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    (work,) = (settings.cache_dir / "training").glob("teacher-*")
    weights = work / "model" / "model.safetensors"
    assert run.data.tags["teacher_weights_path"] == str(weights)
    assert run.data.tags["teacher_weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss_epoch")] == [1, 2]
    assert "test_weighted_f1" in run.data.metrics and run.data.params["epochs"] == "2.0"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"teacher.json", "evaluation.json"}
    # the teacher is never a serving model (the session's MLflow may hold other tests' models)
    assert not [v for v in client.search_model_versions() if v.run_id == run.info.run_id]
