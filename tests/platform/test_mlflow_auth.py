"""The production registry: a real ``mlflow server --app-name basic-auth`` started the way the
local platform starts it (``MlflowService`` with ``env=prod``) on a free port.

Anonymous requests are refused, the services' reader account (created by ``ready``) can
read the champion but not move it, and the admin account (the model CLI's gate) can.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.settings import Settings, load_settings
from cryptopulse.platform.services import MlflowService, ServiceError
from scoring.registry_uri import (
    TRACKING_PASSWORD,
    TRACKING_USERNAME,
    RegistryAccessError,
    mlflow_client,
    use_mlflow_account,
)
from tests.ports import free_port

STARTUP_S = 600
"""MLflow starts in about 10 s on an idle machine; creating its databases takes minutes on a busy one."""
ADMIN_PASSWORD = "admin-pass-0123456789"  # pragma: allowlist secret
READER_PASSWORD = "reader-pass-0123456789"  # pragma: allowlist secret


def prod_settings(home: Path, port: int, **account: str) -> Settings:
    return load_settings(
        env="prod",
        home=home,
        mlflow={
            "port": port,
            "admin_password": ADMIN_PASSWORD,
            "reader_password": READER_PASSWORD,
            **account,
        },
    )


@pytest.mark.unit
def test_credentials_are_checked_without_quoting_them(tmp_path: Path) -> None:
    with pytest.raises(RegistryAccessError, match="together"):
        use_mlflow_account(load_settings(home=tmp_path, mlflow={"username": "admin"}))
    short = load_settings(
        env="prod",
        home=tmp_path,
        mlflow={"admin_password": "s3cr3t", "reader_password": "r" * 12},  # pragma: allowlist secret
    )
    with pytest.raises(ServiceError, match="ADMIN_PASSWORD \\(12\\+ characters") as refused:
        MlflowService(short).prepare()
    assert "s3cr3t" not in str(refused.value)
    settings = prod_settings(tmp_path, 5000, username="cryptopulse-reader", password=READER_PASSWORD)
    assert READER_PASSWORD not in repr(settings.mlflow), "passwords are secrets"


@pytest.mark.unit
def test_prod_refuses_to_run_mlflow_or_a_client_without_accounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TRACKING_USERNAME, raising=False)
    bare = load_settings(env="prod", home=tmp_path)
    with pytest.raises(ServiceError, match="CRYPTOPULSE_MLFLOW__ADMIN_PASSWORD"):
        MlflowService(bare).prepare()
    with pytest.raises(RegistryAccessError, match="CRYPTOPULSE_MLFLOW__USERNAME"):
        use_mlflow_account(bare)
    # dev keeps the open local registry
    dev = MlflowService(load_settings(env="dev", home=tmp_path))
    assert "--app-name" not in dev.argv() and "MLFLOW_AUTH_CONFIG_PATH" not in dev.env()


@pytest.mark.unit
def test_prod_service_files(tmp_path: Path) -> None:
    service = MlflowService(prod_settings(tmp_path, 5000))
    service.prepare()
    assert service.argv()[-2:] == ["--app-name", "basic-auth"]
    ini = service.auth_config_path.read_text()
    assert "default_permission = READ" in ini and f"admin_password = {ADMIN_PASSWORD}" in ini
    assert service.auth_config_path.stat().st_mode & 0o777 == 0o600
    assert service.secret_key_path.stat().st_mode & 0o777 == 0o600
    env = service.env()
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(service.auth_config_path)
    assert len(env["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == 64
    assert ADMIN_PASSWORD not in " ".join([*service.argv(), *env.values()]), "only in the owner-only ini"
    key = env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    service.prepare()
    assert service.env()["MLFLOW_FLASK_SERVER_SECRET_KEY"] == key, "the CSRF key is made once"


@pytest.fixture
def prod_mlflow(tmp_path: Path) -> Iterator[MlflowService]:
    if importlib.util.find_spec("flask_wtf") is None:
        pytest.skip("MLflow's basic-auth app needs Flask-WTF (mlflow[auth])")
    service = MlflowService(prod_settings(tmp_path / "home", free_port()))
    service.prepare()
    log = (tmp_path / "mlflow.log").open("wb")
    proc = subprocess.Popen(  # nosec B603 # the platform's own argv
        service.argv(), env={**os.environ, **service.env()}, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + STARTUP_S
        while not service.ready():
            assert proc.poll() is None, (tmp_path / "mlflow.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "MLflow with basic auth did not become ready"
            time.sleep(1)
        yield service
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(STARTUP_S + 300)
def test_only_the_admin_moves_champion(prod_mlflow: MlflowService, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.exceptions import MlflowException

    for name in (TRACKING_USERNAME, TRACKING_PASSWORD):
        monkeypatch.delenv(name, raising=False)  # restored after the test
    home, port = prod_mlflow.settings.home, prod_mlflow.port
    search = f"{prod_mlflow.url}/api/2.0/mlflow/registered-models/search"
    assert httpx.get(search, timeout=10).status_code == 401, "anonymous requests are refused"
    wrong = httpx.get(search, auth=("cryptopulse-reader", "not-the-password"), timeout=10)
    assert wrong.status_code == 401

    admin_settings = prod_settings(home, port, username="admin", password=ADMIN_PASSWORD)
    admin = mlflow_client(admin_settings)
    model = admin_settings.mlflow.registered_model
    admin.create_registered_model(model)
    run = admin.create_run(admin.create_experiment("auth-test"))
    version = admin.create_model_version(model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    admin.set_registered_model_alias(model, "champion", version.version)

    reader = mlflow_client(prod_settings(home, port, username="cryptopulse-reader", password=READER_PASSWORD))
    assert reader.get_model_version_by_alias(model, "champion").version == version.version
    with pytest.raises(MlflowException) as refused:
        reader.set_registered_model_alias(model, "champion", version.version)
    assert refused.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(MlflowException):
        reader.delete_registered_model_alias(model, "champion")

    admin = mlflow_client(admin_settings)
    admin.delete_registered_model_alias(model, "champion")
    admin.set_registered_model_alias(model, "champion", version.version)
    assert admin.get_model_version_by_alias(model, "champion").version == version.version
    # the reader account is re-asserted, not duplicated, on the next start
    from scoring.registry_uri import ensure_reader_account

    assert ensure_reader_account(admin_settings) is False
    assert httpx.get(search, auth=("cryptopulse-reader", READER_PASSWORD), timeout=10).status_code == 200
