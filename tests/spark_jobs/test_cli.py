"""CLI wiring of the Spark jobs: commands exist and bad arguments fail before Spark starts."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from spark_jobs.cli import register

pytestmark = pytest.mark.unit


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Root."""

    register(app)
    return app


def test_commands_registered(app: typer.Typer) -> None:
    runner = CliRunner()
    assert "stream" in runner.invoke(app, ["spark", "--help"]).output
    out = runner.invoke(app, ["backfill", "--help"]).output
    assert "--from" in out and "--model" in out and "--source" in out and "--master" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--from", "2026-01-02", "--to", "2026-01-01"],
        ["--from", "2026-01-01", "--to", "2026-01-01", "--source", "s3"],
        ["--from", "yesterday", "--to", "2026-01-01"],
    ],
)
def test_bad_backfill_arguments_exit_2(app: typer.Typer, args: list[str]) -> None:
    result = CliRunner().invoke(app, ["backfill", *args])
    assert result.exit_code == 2


def test_a_named_spark_connect_server_that_does_not_answer_exits_1(
    app: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import get_settings
    from tests.ports import free_port

    url = f"sc://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CRYPTOPULSE_SPARK__BACKFILL_REMOTE", url)
    # The command reads the cached process settings, which an earlier test may have filled:
    # without a fresh read it would run a real backfill in (and then stop) the shared session.
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["backfill", "--from", "2026-01-01", "--to", "2026-01-01"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert f"nothing answers at {url}" in result.output
