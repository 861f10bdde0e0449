"""A tiny but real sentiment model for the stream integration tests.

Trained once with the model engineer's ``model_export.train`` (a few fine-tuning
steps on a few rows per dataset: real ONNX + linear + lexicon members, poor
accuracy, fast) and cached under ``cache_dir/test-models`` so later runs reuse it.
``register_versions`` puts it in the MLflow registry under a unique name so the
worker loads it by alias exactly as in production and hot swap can be exercised.
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

from cryptopulse.settings import Settings

TINY_VERSION = "stream-test-tiny"


def tiny_model_dir(settings: Settings) -> Path:
    """Path of a complete artifact directory; trains it on first use (about a minute or two)."""
    from scoring.runtime import ARTIFACT_FILES

    root = settings.cache_dir / "test-models"
    root.mkdir(parents=True, exist_ok=True)
    target = root / "stream-tiny"
    with (root / ".stream-tiny.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all((target / name).exists() for name in ARTIFACT_FILES):
            return target
        from model_export.train import TrainConfig, train

        config = TrainConfig(
            out_dir=root / "stream-tiny-work",
            limit_per_split=40,
            max_steps=4,
            max_examples=200,
            batch_size=16,
            threads=1,
            model_version=TINY_VERSION,
            measure_latency=False,
            verify_tolerance=1.0,
        )
        result = train(config, progress=False)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(result.artifact_dir, target)
        shutil.rmtree(config.out_dir, ignore_errors=True)
        return target


def register_versions(settings: Settings, artifact: Path, name: str, count: int = 1) -> list[str]:
    """Register ``artifact`` ``count`` times as versions of model ``name``; alias champion -> first."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(settings.mlflow.uri)
    client = MlflowClient(tracking_uri=settings.mlflow.uri, registry_uri=settings.mlflow.uri)
    client.create_registered_model(name)
    mlflow.set_experiment("cryptopulse-stream-tests")
    versions: list[str] = []
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(artifact), artifact_path="model")
        source = f"{run.info.artifact_uri}/model"
        for _ in range(count):
            mv = client.create_model_version(name=name, source=source, run_id=run.info.run_id)
            versions.append(str(mv.version))
    client.set_registered_model_alias(name, "champion", versions[0])
    return versions


def move_champion(settings: Settings, name: str, version: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow.uri, registry_uri=settings.mlflow.uri)
    client.set_registered_model_alias(name, "champion", version)
