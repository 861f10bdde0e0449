from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from core.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit


def test_defaults_fit_a_small_machine():
    settings = load_settings()
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.redis.dsn == "redis://127.0.0.1:6379/0"
    assert settings.mlflow.uri == "http://127.0.0.1:5000"
    assert settings.spark.master == "local[2]"
    assert settings.kafka.default_partitions <= 4


def test_env_overrides_nested_values(monkeypatch):
    monkeypatch.setenv("CRYPTOPULSE_KAFKA__PORT", "19092")
    monkeypatch.setenv("CRYPTOPULSE_SPARK__SHUFFLE_PARTITIONS", "8")
    settings = load_settings()
    assert settings.kafka.bootstrap == "127.0.0.1:19092"
    assert settings.spark.shuffle_partitions == 8


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("CRYPTOPULSE_REDIS__PORT=16379\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().redis.port == 16379


def test_bad_value_names_variable_and_allowed_values(monkeypatch):
    monkeypatch.setenv("CRYPTOPULSE_KAFKA__PORT", "99999")
    monkeypatch.setenv("CRYPTOPULSE_LOG_LEVEL", "LOUD")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "CRYPTOPULSE_KAFKA__PORT='99999'" in message
    assert "less than or equal to 65535" in message
    assert "CRYPTOPULSE_LOG_LEVEL='LOUD'" in message
    assert "'DEBUG'" in message


def test_settings_are_frozen():
    settings = load_settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.kafka.port = 1  # type: ignore[misc]


def test_cli_fails_fast_on_bad_setting(monkeypatch):
    env = {"CRYPTOPULSE_SPARK__DRIVER_MEMORY": "lots", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "cryptopulse.cli", "status"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    assert "CRYPTOPULSE_SPARK__DRIVER_MEMORY='lots'" in result.stderr


def test_configuration_doc_is_current():
    from pathlib import Path

    from core.settings import render_configuration_doc

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text() == render_configuration_doc(), "run: python -m core.settings"


# -- production profile (CRYPTOPULSE_ENV=prod) --------------------------------------------


def test_prod_turns_api_keys_on_by_default(monkeypatch):
    monkeypatch.setenv("CRYPTOPULSE_ENV", "prod")
    monkeypatch.setenv("CRYPTOPULSE_API__HOST", "0.0.0.0")
    settings = load_settings()
    assert settings.api.auth_enabled
    assert settings.api.host == "0.0.0.0"
    assert not load_settings(env="dev").api.auth_enabled


def test_prod_keeps_other_api_values_and_explicit_sections(monkeypatch):
    from core.settings import ApiSettings

    monkeypatch.setenv("CRYPTOPULSE_ENV", "prod")
    monkeypatch.setenv("CRYPTOPULSE_API__PORT", "8123")
    assert load_settings().api.port == 8123
    section = load_settings(api=ApiSettings(port=8124)).api
    assert section.auth_enabled and section.port == 8124


@pytest.mark.parametrize(
    ("host", "named"),
    [("127.0.0.1", []), ("0.0.0.0", ["CRYPTOPULSE_API__HOST", "0.0.0.0"])],
)
def test_prod_refuses_api_without_keys(monkeypatch, host, named):
    monkeypatch.setenv("CRYPTOPULSE_ENV", "prod")
    monkeypatch.setenv("CRYPTOPULSE_API__AUTH_ENABLED", "false")
    monkeypatch.setenv("CRYPTOPULSE_API__HOST", host)
    monkeypatch.setenv("CRYPTOPULSE_REDIS__URL", "redis://:hunter2@redis:6379/0")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    for name in ["CRYPTOPULSE_ENV=prod", "CRYPTOPULSE_API__AUTH_ENABLED", "apikey create", *named]:
        assert name in message
    assert "hunter2" not in message, "the error must not echo other settings"


def test_prod_refusal_stops_the_cli():
    env = {"CRYPTOPULSE_ENV": "prod", "CRYPTOPULSE_API__AUTH_ENABLED": "0", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "cryptopulse.cli", "status"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    assert "CRYPTOPULSE_API__AUTH_ENABLED" in result.stderr
