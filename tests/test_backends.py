"""The choice of test backend (tests/backends.py): local by default, containers on request, and a
clear, immediate failure where containers are asked for but no Docker engine answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import BACKEND_ENV, BackendUnavailable, require_docker_engine, selected_backend

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def test_local_is_the_default() -> None:
    assert selected_backend({}) == "local"
    assert selected_backend({BACKEND_ENV: ""}) == "local"


def test_containers_are_chosen_by_the_one_setting() -> None:
    assert selected_backend({BACKEND_ENV: "containers"}) == "containers"
    assert selected_backend({BACKEND_ENV: " Containers "}) == "containers"
    assert selected_backend({BACKEND_ENV: "local"}) == "local"


def test_an_unknown_backend_names_the_choices() -> None:
    with pytest.raises(
        BackendUnavailable, match="'docker' is not a test backend; use one of: local, containers"
    ):
        selected_backend({BACKEND_ENV: "docker"})


def test_no_docker_engine_fails_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    with pytest.raises(BackendUnavailable) as failure:
        require_docker_engine()
    message = str(failure.value)
    assert f"{tmp_path}/docker.sock" in message
    assert f"{BACKEND_ENV}=local" in message


def test_the_platform_fixture_stops_the_run_at_once_without_docker(tmp_path: Path) -> None:
    """The real ``platform`` fixture, in a pytest run of its own: exit status 4 (usage error) and
    the message, before any test runs and without touching the local platform."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_needs_platform.py").write_text(
        "def test_uses_it(platform):\n    raise AssertionError\n"
    )
    env = {
        **os.environ,
        BACKEND_ENV: "containers",
        "DOCKER_HOST": f"unix://{tmp_path}/docker.sock",
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-c",
            str(tmp_path / "pytest.ini"),
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "needs a running Docker engine" in result.stdout
    assert "1 passed" not in result.stdout and "1 failed" not in result.stdout
