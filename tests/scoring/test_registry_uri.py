"""Model references without a registry: parsing, directories, pinning (the registry side is
exercised against real MLflow in test_holder.py and tests/model_export/test_registry.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import load_settings
from scoring.registry_uri import (
    ModelLoadError,
    RegistryVersion,
    is_registry_uri,
    local_model_dir,
    parse_models_uri,
    pinned_uri,
)

pytestmark = pytest.mark.unit


def test_parse_models_uri() -> None:
    assert parse_models_uri("models:/m@champion") == ("m", "champion", None)
    assert parse_models_uri("models:/m/3") == ("m", None, "3")
    for bad in ("models:/no-alias-or-version", "models:/m/three", "models:/m@", "runs:/abc/model"):
        with pytest.raises(ModelLoadError, match="not a model registry URI"):
            parse_models_uri(bad)


def test_registry_version_label_and_uri() -> None:
    version = RegistryVersion("cp", "7")
    assert version.label == "cp/7" and version.uri == "models:/cp/7"
    assert parse_models_uri(version.uri) == ("cp", None, "7")
    assert is_registry_uri(version.uri) and not is_registry_uri("/models/cp")


def test_directories_need_no_registry(tmp_path: Path) -> None:
    # An unreachable registry proves a directory never asks it.
    settings = load_settings(home=tmp_path, mlflow={"tracking_uri": "http://127.0.0.1:9"})
    assert local_model_dir(str(tmp_path), settings) == (tmp_path, None)
    assert pinned_uri(str(tmp_path), settings) == str(tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        local_model_dir(str(tmp_path / "missing"), settings)


@pytest.mark.slow  # importing MLflow takes seconds
def test_unreachable_registry_is_a_load_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = load_settings(home=tmp_path, mlflow={"tracking_uri": "http://127.0.0.1:9"})
    with pytest.raises(ModelLoadError, match=r"cannot resolve models:/m@champion at http://127\.0\.0\.1:9"):
        pinned_uri("models:/m@champion", settings)
