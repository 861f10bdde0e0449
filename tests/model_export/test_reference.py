"""Input references against the real MLflow of the test platform: attach at registration time,
backfill older versions, read back by the stream worker's loader, and the ``model reference``
command. The test registers under a model and experiment name of its own, deleted afterwards."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import core.cli
from core.settings import Settings, load_settings
from model_export import reference as ref
from model_export import registry
from model_export.train import TrainResult
from scoring.drift import REFERENCE_TAG, InputReference
from scoring.registry_uri import mlflow_client
from stream_processors.drift import registry_reference_loader

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(platform: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        mlflow={
            **platform.mlflow.model_dump(),
            "registered_model": f"cp-reference-{tag}",
            "experiment": f"cp-reference-{tag}",
        },
        cache_dir=tmp_path_factory.mktemp("cache"),
    )
    yield settings
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    with contextlib.suppress(MlflowException):  # nothing was registered
        client.delete_registered_model(settings.mlflow.registered_model)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment)
    if experiment is not None:
        client.delete_experiment(experiment.experiment_id)


def _register(artifact: Path, settings: Settings) -> str:
    """A version registered the way ``train`` does it (``log_and_register``), from the tiny model."""
    import mlflow

    metrics = json.loads((artifact / "metadata.json").read_text("utf-8"))["metrics"]
    result = TrainResult(
        artifact_dir=artifact,
        fp32_onnx=artifact / "model.onnx",
        metrics={k: float(metrics[k]) for k in ("test_weighted_f1", "test_accuracy", "test_macro_f1")},
        report={},
        images=[],
    )
    mlflow.set_tracking_uri(settings.mlflow.uri)
    mlflow.set_experiment(settings.mlflow.experiment)
    with mlflow.start_run() as run:
        return registry.log_and_register(result, None, settings, run.info.run_id).version  # type: ignore[arg-type]


def _validation_rows(artifact: Path) -> dict[str, int]:
    """Reference rows per source of the tiny model: its row limit per dataset and split."""
    limit = int(json.loads((artifact / "metadata.json").read_text("utf-8"))["config"]["limit_per_split"])
    return {"news": 3 * limit, "reddit": 2 * limit, "replay": 5 * limit}


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("reference")(ref.reference_command)
    app.command("noop")(lambda: None)  # two commands: the Typer app keeps "reference" as a sub-command
    return app


def test_reference_is_attached_to_a_registered_version(tiny_model_dir: Path, settings: Settings) -> None:
    name = settings.mlflow.registered_model
    first = _register(tiny_model_dir, settings)
    # Registration attached it already (the hook in log_and_register); a second attach skips.
    assert ref.versions_missing_reference(settings) == []
    skipped = ref.attach_at_registration(settings, first, tiny_model_dir)
    assert skipped is not None and skipped.skipped

    done = ref.attach_reference(settings, first, artifact_dir=tiny_model_dir, force=True)
    assert not done.skipped
    assert done.artifact_path == f"drift/version-{first}/{ref.REFERENCE_FILE}"
    # validation split of the tiny run: tweets -> reddit, the rest -> news, replay: all pooled
    rows = _validation_rows(tiny_model_dir)
    assert done.sources == rows
    assert ref.versions_missing_reference(settings) == []

    stored = ref.read_reference(settings, first)
    assert isinstance(stored, InputReference) and stored.split == "validation"
    assert stored.model_version == f"{name}/{first}" and len(stored.vocabulary) > 100
    reddit = stored.for_source("reddit")
    assert reddit is not None and set(reddit.datasets) == {"stock_tweets", "tweeteval"}
    assert set(reddit.continuous) == {"length", "confidence", "oov", "distance"}
    assert sum(reddit.categorical["label"].values()) == rows["reddit"]
    # what the stream worker loads for this version
    assert registry_reference_loader(settings)(f"{name}/{first}") == stored
    assert registry_reference_loader(settings)("tiny-test") is None  # a directory model: no registry
    assert registry_reference_loader(settings)(f"{name}/999") is None  # unknown version

    again = ref.attach_reference(settings, first)
    assert again.skipped and again.artifact_path == done.artifact_path  # computed once unless --force


def test_reference_command_backfills_older_versions(
    tiny_model_dir: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.cli, "load_cli_settings", lambda: settings)
    runner = CliRunner()
    name = settings.mlflow.registered_model
    older = _register(tiny_model_dir, settings)
    client = mlflow_client(settings)
    tags = client.get_model_version(name, older).tags
    assert REFERENCE_TAG in tags  # attached at registration; drop it to make this an old version
    client.delete_model_version_tag(name, older, REFERENCE_TAG)
    assert older in ref.versions_missing_reference(settings)

    out = runner.invoke(_cli(), ["reference", "--all-missing"])
    assert out.exit_code == 0, out.output
    reddit = _validation_rows(tiny_model_dir)["reddit"]
    assert f"version {older}: reference attached" in out.output and f"reddit {reddit}" in out.output
    assert ref.versions_missing_reference(settings) == []

    out = runner.invoke(_cli(), ["reference", "--all-missing"])
    assert out.exit_code == 0 and "every registered version has an input reference" in out.output
    out = runner.invoke(_cli(), ["reference", older])
    assert out.exit_code == 0 and "--force recomputes it" in out.output
    out = runner.invoke(_cli(), ["reference", "999"])
    assert out.exit_code == 1 and "failed" in out.output and "no version 999" in out.output
    out = runner.invoke(_cli(), ["reference"])
    assert out.exit_code == 2
