"""Registry helpers for the stream integration tests.

The model itself is the suite's shared tiny model (``tests.tiny_model``);
``register_versions`` puts it in the MLflow registry under a unique name so the
worker loads it by alias exactly as in production and hot swap can be exercised.
"""

from __future__ import annotations

from pathlib import Path

from cryptopulse.settings import Settings
from tests.tiny_model import TINY_VERSION, tiny_model_dir

__all__ = ["TINY_VERSION", "move_champion", "register_versions", "tiny_model_dir"]


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
