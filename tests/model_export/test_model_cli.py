"""``cryptopulse model ensure-default``, which the Docker stack's model-init service runs."""

from __future__ import annotations

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
