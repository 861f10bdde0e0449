"""Where a model reference points, and the one MLflow client every component uses.

A model reference is ``models:/NAME@ALIAS`` (follows the alias: ``champion`` is what
serving loads), ``models:/NAME/VERSION`` (one fixed version) or an artifact directory.
Registry versions are downloaded once into ``settings.cache_dir/models/NAME/VERSION``.

Every registry call goes through :func:`mlflow_client`, so tracking and registry both
talk to ``settings.mlflow.uri`` and never to whatever MLflow's process default is.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from core.settings import Settings

MODELS_SCHEME = "models:/"
_MODELS_URI_RE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class ModelLoadError(RuntimeError):
    """The model URI or directory cannot be resolved or is not a complete artifact."""


@dataclass(frozen=True)
class RegistryVersion:
    """One concrete registered version; ``label`` (``NAME/VERSION``) is what runtimes report."""

    name: str
    version: str

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``: this version, whatever the aliases do later."""
        return f"{MODELS_SCHEME}{self.name}/{self.version}"


def is_registry_uri(uri: str) -> bool:
    return uri.startswith(MODELS_SCHEME)


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, alias, version)."""
    match = _MODELS_URI_RE.match(uri)
    if match is None:
        raise ModelLoadError(
            f"not a model registry URI: {uri!r} (expected models:/NAME@ALIAS or models:/NAME/VERSION)"
        )
    return match["name"], match["alias"], match["version"]


def mlflow_client(settings: Settings) -> MlflowClient:
    """An MLflow client bound to ``settings.mlflow.uri`` for both tracking and the registry."""
    from mlflow import MlflowClient  # lazy: importing MLflow takes seconds

    return MlflowClient(tracking_uri=settings.mlflow.uri, registry_uri=settings.mlflow.uri)


def resolve_version(uri: str, settings: Settings, client: MlflowClient | None = None) -> RegistryVersion:
    """The version a registry URI points to now (for ``NAME/VERSION``: that it exists)."""
    name, alias, version = parse_models_uri(uri)
    client = client or mlflow_client(settings)
    try:
        found = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, str(version))
        )
    except Exception as exc:  # mlflow raises MlflowException / connection errors
        raise ModelLoadError(f"cannot resolve {uri} at {settings.mlflow.uri}: {exc}") from exc
    return RegistryVersion(name, str(found.version))


def pinned_uri(uri: str, settings: Settings) -> str:
    """``uri`` with its alias replaced by the version it points to now (other URIs unchanged).

    Jobs that load a model in several processes pin it first, so all of them load the same
    version even when the alias moves meanwhile.
    """
    return resolve_version(uri, settings).uri if is_registry_uri(uri) else uri


def local_model_dir(uri: str, settings: Settings) -> tuple[Path, str | None]:
    """(artifact directory, version label) of a registry URI or a directory; the label is
    None for a directory (the runtime then reports the artifact's own ``model_version``)."""
    if not is_registry_uri(uri):
        path = Path(uri).expanduser()
        if not path.is_dir():
            raise ModelLoadError(f"model directory {path} does not exist")
        return path, None
    client = mlflow_client(settings)
    version = resolve_version(uri, settings, client)
    return _download(client, version, uri, settings), version.label


def _download(client: MlflowClient, version: RegistryVersion, uri: str, settings: Settings) -> Path:
    """The version's artifact in the cache, downloaded now unless an earlier run did."""
    from mlflow.artifacts import download_artifacts

    target = settings.cache_dir / "models" / version.name / version.version
    if (target / "metadata.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version.version}-", dir=target.parent))
    try:
        # Resolve the version's source through *this* registry (never the process default).
        source = client.get_model_version_download_uri(version.name, version.version)
        local = Path(
            download_artifacts(artifact_uri=source, dst_path=str(tmp), tracking_uri=settings.mlflow.uri)
        )
        found = next(iter(local.rglob("metadata.json")), None)
        if found is None:
            raise ModelLoadError(
                f"{uri} (version {version.version}) holds no metadata.json; not a CryptoPulse model"
            )
        if not target.exists():
            found.parent.replace(target)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot download {uri} (version {version.version}): {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
