"""Registry helpers for the stream integration tests.

The model itself is the suite's shared tiny model (``tests.tiny_model``);
``register_versions`` puts it in the MLflow registry under a unique name so the
worker loads it by alias exactly as in production and hot swap can be exercised.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from core.settings import Settings
from tests.tiny_model import TINY_VERSION, tiny_model_dir

__all__ = ["TINY_VERSION", "delete_model", "move_champion", "register_versions", "tiny_model_dir"]


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


def delete_model(settings: Settings, name: str) -> None:
    """Remove a throw-away model: registry entry, its runs' artifacts and the local download cache.

    Without this every test run leaves ~50 MB behind in the artifact store and the cache.
    """
    from mlflow import MlflowClient
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = MlflowClient(tracking_uri=settings.mlflow.uri, registry_uri=settings.mlflow.uri)
    run_ids = {mv.run_id for mv in client.search_model_versions(f"name = '{name}'") if mv.run_id}
    client.delete_registered_model(name)
    for run_id in run_ids:
        artifact_uri = client.get_run(run_id).info.artifact_uri
        get_artifact_repository(artifact_uri, tracking_uri=settings.mlflow.uri).delete_artifacts()
        client.delete_run(run_id)
    shutil.rmtree(settings.cache_dir / "models" / name, ignore_errors=True)
