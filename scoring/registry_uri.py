"""Where a model reference points, and the one MLflow client every component uses.

A model reference is ``models:/NAME@ALIAS`` (follows the alias: ``champion`` is what
serving loads), ``models:/NAME/VERSION`` (one fixed version) or an artifact directory.
Registry versions are downloaded once into ``settings.cache_dir/models/NAME/VERSION``.

Every registry call goes through :func:`mlflow_client`, so tracking and registry both
talk to ``settings.mlflow.uri`` and never to whatever MLflow's process default is.

With ``env=prod`` MLflow runs its basic-auth app (``default_permission = READ``): every
request needs an account, services use the read-only ``mlflow.reader_username`` and only
the admin account (the model CLI's promotion gate) can move an alias. MLflow's client
reads the account from ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` on every
request, so :func:`use_mlflow_account` exports ``settings.mlflow.username``/``password``
there.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from core.settings import Settings

log = logging.getLogger(__name__)

MODELS_SCHEME = "models:/"
TRACKING_USERNAME = "MLFLOW_TRACKING_USERNAME"
TRACKING_PASSWORD = "MLFLOW_TRACKING_PASSWORD"  # nosec B105 # the variable's name, no password  # pragma: allowlist secret
MIN_PASSWORD_CHARS = 12
"""MLflow's basic-auth app refuses shorter passwords."""
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


class RegistryAccessError(RuntimeError):
    """The registry needs an account (prod) and the settings name none, or a wrong one."""


def use_mlflow_account(settings: Settings) -> None:
    """Export ``settings.mlflow.username``/``password`` for MLflow's client (process-wide:
    one process acts as one account). Without an account in settings the environment is
    left alone; in prod that is refused, since every request would be answered 401."""
    account = settings.mlflow
    if (account.username is None) != (account.password is None):
        raise RegistryAccessError(
            "set CRYPTOPULSE_MLFLOW__USERNAME and CRYPTOPULSE_MLFLOW__PASSWORD together"
        )
    if account.username is not None and account.password is not None:
        os.environ[TRACKING_USERNAME] = account.username
        os.environ[TRACKING_PASSWORD] = account.password.get_secret_value()
    elif settings.env == "prod" and not os.environ.get(TRACKING_USERNAME):
        raise RegistryAccessError(
            "the production registry requires an account: set CRYPTOPULSE_MLFLOW__USERNAME and "
            "CRYPTOPULSE_MLFLOW__PASSWORD (the read-only reader for services, the admin for the model CLI)"
        )


def mlflow_client(settings: Settings) -> MlflowClient:
    """An MLflow client bound to ``settings.mlflow.uri`` for both tracking and the registry,
    authenticated as ``settings.mlflow.username`` when one is set."""
    from mlflow import MlflowClient  # lazy: importing MLflow takes seconds

    use_mlflow_account(settings)
    return MlflowClient(tracking_uri=settings.mlflow.uri, registry_uri=settings.mlflow.uri)


def check_registry_passwords(settings: Settings) -> None:
    """The admin and reader passwords the production registry needs: set, and long enough
    for MLflow (the message never quotes them)."""
    account = settings.mlflow
    for variable, secret in (
        ("CRYPTOPULSE_MLFLOW__ADMIN_PASSWORD", account.admin_password),
        ("CRYPTOPULSE_MLFLOW__READER_PASSWORD", account.reader_password),
    ):
        if secret is None or len(secret.get_secret_value()) < MIN_PASSWORD_CHARS:
            raise RegistryAccessError(
                f"env=prod runs MLflow with basic auth: set {variable} "
                f"({MIN_PASSWORD_CHARS}+ characters, e.g. `openssl rand -hex 16`)"
            )


def ensure_reader_account(settings: Settings) -> bool:
    """Create the read-only account (``mlflow.reader_username``) with the admin account, or
    reset its password to ``mlflow.reader_password``; True when it was created.

    Idempotent: run by the platform each time the production MLflow starts. The reader is
    an ordinary user, so the server's ``default_permission = READ`` is all it gets: it can
    load any model and read any alias, but not set one on a model the admin created.
    """
    from mlflow.exceptions import RestException
    from mlflow.server.auth.client import AuthServiceClient

    check_registry_passwords(settings)
    account = settings.mlflow
    assert account.admin_password is not None and account.reader_password is not None  # nosec B101 # narrowing
    saved = {name: os.environ.get(name) for name in (TRACKING_USERNAME, TRACKING_PASSWORD)}
    os.environ[TRACKING_USERNAME] = account.admin_username
    os.environ[TRACKING_PASSWORD] = account.admin_password.get_secret_value()
    client = AuthServiceClient(account.uri)
    password = account.reader_password.get_secret_value()
    try:
        try:
            client.create_user(account.reader_username, password)
        except RestException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            client.update_user_password(account.reader_username, password)
            return False
        log.info("mlflow reader account created", extra={"username": account.reader_username})
        return True
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
