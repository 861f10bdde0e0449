"""Registry flow against a real MLflow server: register, alias, gated promotion both ways, load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

import model_export.cli as cli
from core.settings import Settings, load_settings
from model_export import registry
from model_export.train import TrainResult
from scoring.runtime import SentimentRuntime

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        mlflow={"tracking_uri": mlflow_server, "registered_model": "cp-test", "experiment": "cp-test"},
        model={"promotion_min_gain": 0.01, "promotion_max_slowdown": 1.5},
        cache_dir=tmp_path_factory.mktemp("cache"),
    )


def _register(result: TrainResult, settings: Settings, f1: float, p95: float) -> registry.RegisteredModel:
    import mlflow

    fake = dataclasses.replace(
        result, metrics={**result.metrics, "test_weighted_f1": f1, "latency_p95_ms": p95}
    )
    mlflow.set_tracking_uri(settings.mlflow.uri)
    mlflow.set_experiment(settings.mlflow.experiment)
    with mlflow.start_run() as run:
        return registry.log_and_register(fake, None, settings, run.info.run_id)  # type: ignore[arg-type]


def test_registry_lifecycle(tiny: TrainResult, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry.champion_version(settings) is None
    v1 = _register(tiny, settings, f1=0.70, p95=5.0)
    assert "champion" in v1.aliases  # the first version becomes champion

    v2 = _register(tiny, settings, f1=0.705, p95=5.0)  # gain below the 0.01 margin
    assert "challenger" in v2.aliases
    refused = registry.promote(v2.version, settings)
    assert not refused.allowed and "gain" in refused.reason
    assert registry.champion_version(settings) == v1.version

    v3 = _register(tiny, settings, f1=0.80, p95=10.0)  # better but 2x slower than allowed 1.5x
    refused = registry.promote(v3.version, settings)
    assert not refused.allowed and "latency" in refused.reason

    v4 = _register(tiny, settings, f1=0.80, p95=6.0)
    monkeypatch.setattr(cli, "_settings", lambda: settings)
    runner = CliRunner()
    out = runner.invoke(cli.app, ["model", "promote", v2.version])
    assert out.exit_code == 1 and "not promoted" in out.output
    out = runner.invoke(cli.app, ["model", "promote", v4.version])
    assert out.exit_code == 0, out.output
    assert registry.champion_version(settings) == v4.version
    out = runner.invoke(cli.app, ["model", "promote", "999"])
    assert out.exit_code == 2

    listed = registry.list_versions(settings)
    assert [v.version for v in listed] == [v4.version, v3.version, v2.version, v1.version]
    assert "champion" in listed[0].aliases
    out = runner.invoke(cli.app, ["model", "list"])
    assert out.exit_code == 0 and "cp-test" in out.output

    # serving resolves the alias through settings' registry (not the process default), downloads once
    # into the cache and reports name/version
    import mlflow

    mlflow.set_registry_uri(f"sqlite:///{settings.cache_dir}/not-this-registry.db")
    runtime = SentimentRuntime.load("models:/cp-test@champion", settings)
    assert runtime.model_version == f"cp-test/{v4.version}"
    assert runtime.score(["bitcoin to the moon"])[0].label is not None
    assert Path(settings.cache_dir, "models", "cp-test", v4.version, "model.onnx").is_file()

    # a champion exists: ensure_default_model must not train
    monkeypatch.setattr(registry, "train_and_register", lambda *a, **k: pytest.fail("trained again"))
    assert registry.ensure_default_model(settings, progress=False) == v4.version


def test_gate_rule_without_server(settings: Settings) -> None:
    champ = registry.RegisteredModel(
        "m", "1", "r", ("champion",), {"eval_weighted_f1": 0.8, "eval_latency_p95_ms": 4}
    )
    better = registry.RegisteredModel("m", "2", "r", (), {"eval_weighted_f1": 0.82, "eval_latency_p95_ms": 5})
    worse = registry.RegisteredModel("m", "3", "r", (), {"eval_weighted_f1": 0.805, "eval_latency_p95_ms": 4})
    assert registry.promotion_gate(better, champ, settings).allowed
    assert not registry.promotion_gate(worse, champ, settings).allowed
    assert registry.promotion_gate(better, None, settings).allowed
    assert not registry.promotion_gate(better, champ, settings, "aaa", "bbb").allowed
