"""``cryptopulse model ensure-default``, which the Docker stack's model-init service runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import model_export.cli as cli
from core.settings import Settings, load_settings
from model_export import registry

pytestmark = pytest.mark.unit

MLFLOW_URI = "http://mlflow.invalid:5000"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(
        cli,
        "_settings",
        lambda: load_settings(mlflow={"registered_model": "cp-test", "tracking_uri": MLFLOW_URI}),
    )
    return CliRunner()


def test_ensure_default_reports_the_champion(monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> None:
    calls: list[bool] = []

    def ensure(settings: Settings, progress: bool) -> str:
        calls.append(progress)
        return "7"

    monkeypatch.setattr(registry, "ensure_default_model", ensure)
    out = runner.invoke(cli.app, ["model", "ensure-default"])
    assert out.exit_code == 0, out.output
    assert "cp-test: champion is version 7" in out.output
    assert calls == [False], "container logs get no progress bars"


def test_ensure_default_without_torch_names_the_training_image(
    monkeypatch: pytest.MonkeyPatch, runner: CliRunner
) -> None:
    def ensure(settings: Settings, progress: bool) -> str:
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(registry, "ensure_default_model", ensure)
    out = runner.invoke(cli.app, ["model", "ensure-default"])
    assert out.exit_code == 1
    assert "torch is missing" in out.output and "INSTALL_TRAIN=1" in out.output


def test_ensure_default_without_mlflow_fails_clearly_and_masks_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow.exceptions import MlflowException

    uri = "http://ops:s3cret@mlflow.invalid:5000"
    monkeypatch.setattr(
        cli, "_settings", lambda: load_settings(mlflow={"registered_model": "cp-test", "tracking_uri": uri})
    )

    def ensure(settings: Settings, progress: bool) -> str:
        raise MlflowException(f"API request to {uri}/api/2.0/mlflow/registered-models failed: refused")

    monkeypatch.setattr(registry, "ensure_default_model", ensure)
    out = CliRunner().invoke(cli.app, ["model", "ensure-default"])
    assert out.exit_code == 1
    assert "MLflow at http://ops:***@mlflow.invalid:5000" in out.output and "refused" in out.output
    assert "s3cret" not in out.output


def test_promote_prints_every_check_and_exits_1_when_the_gate_fails(
    monkeypatch: pytest.MonkeyPatch, runner: CliRunner
) -> None:
    checks = (
        registry.GateCheck(
            "weighted F1", "pass", "weighted F1 0.8200 vs champion 0.8000: gain +0.0200 >= 0.0100"
        ),
        registry.GateCheck("shadow agreement", "fail", "agrees with the champion on 41.0% of 500 live posts"),
        registry.GateCheck("feedback accuracy", "skip", "3 feedback labels < 20 needed: not weighed yet"),
    )
    decision = registry.PromotionDecision(False, checks[1].detail, "5", "4", checks=checks)
    monkeypatch.setattr(registry, "promote", lambda version, settings, force=False: decision)
    out = runner.invoke(cli.app, ["model", "promote", "5"], env={"COLUMNS": "200"})
    assert out.exit_code == 1
    assert "version 5 not promoted: agrees with the champion on 41.0%" in out.output
    for check in checks:
        assert check.name in out.output and check.detail in out.output


def test_rollback_with_nothing_to_roll_back_to_exits_1(
    monkeypatch: pytest.MonkeyPatch, runner: CliRunner
) -> None:
    def rollback(settings: Settings, reason: str | None = None) -> registry.RollbackResult:
        raise registry.RegistryError(
            "nothing to roll back to: version 1 of cp-test is the first recorded champion"
        )

    monkeypatch.setattr(registry, "rollback", rollback)
    out = runner.invoke(cli.app, ["model", "rollback"])
    assert out.exit_code == 1 and "nothing to roll back to" in out.output


def test_events_with_kafka_away_exits_1(monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> None:
    def events(settings: Settings, limit: int) -> list[object]:
        raise registry.EventsUnavailable("Kafka at 127.0.0.1:1 did not answer")

    monkeypatch.setattr(registry, "recent_model_events", events)
    out = runner.invoke(cli.app, ["model", "events"])
    assert out.exit_code == 1 and "did not answer" in out.output


def test_help_names_the_registry_commands(runner: CliRunner) -> None:
    out = runner.invoke(cli.app, ["model", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    for command in ("list", "promote", "rollback", "events", "ensure-default"):
        assert command in out.output
    out = runner.invoke(cli.app, ["model", "promote", "--help"], env={"COLUMNS": "200"})
    assert "--force" in out.output and "--dry-run" in out.output and "shadow agreement" in out.output


def test_refit_and_bundle_refuse_the_teacher_profile(runner: CliRunner) -> None:
    out = runner.invoke(cli.app, ["train", "--profile", "teacher", "--refit"])
    assert out.exit_code == 2 and "--refit applies to the served ensemble" in out.output
    out = runner.invoke(cli.app, ["model", "bundle", "--profile", "teacher"])
    assert out.exit_code == 2 and "the teacher is not served" in out.output


def test_bundle_help_names_the_release_steps(runner: CliRunner) -> None:
    out = runner.invoke(cli.app, ["model", "bundle", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    assert "--refit" in out.output and "--profile" in out.output and "teacher" in out.output


def test_distillation_options_apply_to_the_distill_profile_only(runner: CliRunner) -> None:
    out = runner.invoke(cli.app, ["train", "--distill-alpha", "0.3"])
    assert out.exit_code == 2 and "--distill-alpha applies to --profile distill only" in out.output
    out = runner.invoke(cli.app, ["train", "--profile", "teacher", "--distill-temperature", "2"])
    assert out.exit_code == 2 and "--distill-temperature applies to --profile distill only" in out.output
    out = runner.invoke(cli.app, ["train", "--profile", "distill", "--distill-alpha", "1.5"])
    assert out.exit_code == 2 and "less than or equal to 1" in out.output


def test_distillation_options_reach_the_students_config(
    monkeypatch: pytest.MonkeyPatch, runner: CliRunner, tmp_path: Path
) -> None:
    """``--distill-alpha`` / ``--distill-temperature`` set DistillConfig; left out, its defaults hold."""
    from model_export import distill

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "model.safetensors").write_bytes(b"weights")
    seen: list[distill.DistillConfig] = []

    def student(config: object, taught: distill.DistillConfig, *args: object, **kwargs: object) -> Path:
        seen.append(taught)
        raise RuntimeError("stop before training")

    monkeypatch.setattr(distill, "distill_student", student)
    base = ["train", "--profile", "distill", "--teacher-dir", str(teacher), "--no-register"]
    runner.invoke(cli.app, [*base, "--distill-alpha", "0.3", "--distill-temperature", "2"])
    runner.invoke(cli.app, base)
    assert [(c.alpha, c.temperature, c.teacher_dir) for c in seen] == [
        (0.3, 2.0, teacher),
        (distill.DistillConfig(teacher_dir=teacher).alpha, 1.0, teacher),
    ]
    assert seen[1].mix_dict() == distill.DISTILL_MIX  # no --distill-mix: the default transfer set
    runner.invoke(cli.app, [*base, "--distill-mix", "cryptolin=5", "--distill-mix", "tweeteval=1:8000"])
    assert seen[2].mix_dict() == {**distill.DISTILL_MIX, "cryptolin": (None, 5), "tweeteval": (8000, 1)}


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("cryptolin", "expected NAME=REPEATS[:CAP]"),
        ("bitcointalk=2", "NAME one of twitter_financial_news"),
        ("cryptolin=many", "whole numbers"),
        ("cryptolin=-1", "REPEATS must be >= 0"),
        ("tweeteval=1:0", "CAP >= 1"),
    ],
)
def test_a_bad_distill_mix_fails_with_its_reason(
    runner: CliRunner, tmp_path: Path, spec: str, reason: str
) -> None:
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "model.safetensors").write_bytes(b"weights")
    base = ["train", "--profile", "distill", "--teacher-dir", str(teacher), "--no-register"]
    out = runner.invoke(cli.app, [*base, "--distill-mix", spec])
    assert out.exit_code == 2 and reason in out.output, out.output


def test_distill_mix_applies_to_the_distill_profile_only(runner: CliRunner) -> None:
    out = runner.invoke(cli.app, ["train", "--distill-mix", "cryptolin=5"])
    assert out.exit_code == 2 and "--distill-mix applies to --profile distill only" in out.output
