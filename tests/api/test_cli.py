"""``cryptopulse apikey create|list|revoke`` and the ``api``/``dashboard`` commands' registration."""

from __future__ import annotations

import re

import pytest
import redis
import typer
from typer.testing import CliRunner

from api import cli as api_cli
from api.security import KeyVerifier
from core.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(redis_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setattr("core.cli.get_settings", lambda: redis_settings)
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    api_cli.register(app)
    return app


def test_apikey_lifecycle(cli: typer.Typer, redis_settings: Settings) -> None:
    runner = CliRunner()
    created = runner.invoke(cli, ["apikey", "create", "grafana", "--rate-limit", "100"])
    assert created.exit_code == 0, created.output
    key = re.search(r"cpk_[0-9a-f]{12}_[A-Za-z0-9_-]+", created.output)
    assert key is not None
    key_id = key[0].split("_")[1]

    listed = runner.invoke(cli, ["apikey", "list"])
    assert listed.exit_code == 0 and key_id in listed.output and "active" in listed.output
    assert key[0] not in listed.output  # never shown again

    client = redis.Redis.from_url(redis_settings.redis.dsn)
    stored = client.hgetall(f"{redis_settings.redis.key_prefix}:apikey:{key_id}")
    assert stored[b"rate_limit_per_minute"] == b"100"

    import asyncio

    import redis.asyncio as aioredis

    async def verify() -> object:
        a = aioredis.Redis.from_url(redis_settings.redis.dsn)
        try:
            return await KeyVerifier(a, redis_settings.redis.key_prefix, 0).verify(key[0])
        finally:
            await a.aclose()

    assert asyncio.run(verify()) is not None
    revoked = runner.invoke(cli, ["apikey", "revoke", key_id])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert asyncio.run(verify()) is None
    assert "revoked" in runner.invoke(cli, ["apikey", "list"]).output
    missing = runner.invoke(cli, ["apikey", "revoke", "ffffffffffff"])
    assert missing.exit_code == 1


def test_commands_registered(cli: typer.Typer) -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    for name in ("api", "dashboard", "apikey"):
        assert name in out
    assert "--workers" in CliRunner().invoke(cli, ["api", "--help"]).output


def test_apikey_scopes(cli: typer.Typer, redis_settings: Settings) -> None:
    runner = CliRunner()
    created = runner.invoke(cli, ["apikey", "create", "dashboard", "--scope", "admin"])
    assert created.exit_code == 0 and "with scopes admin" in created.output, created.output
    key_id = re.findall(r"cpk_([0-9a-f]{12})_", created.output)[0]
    stored = redis.Redis.from_url(redis_settings.redis.dsn).hgetall(
        f"{redis_settings.redis.key_prefix}:apikey:{key_id}"
    )
    assert stored[b"scopes"] == b"admin"
    row = next(line for line in runner.invoke(cli, ["apikey", "list"]).output.splitlines() if key_id in line)
    assert "admin" in row
    assert runner.invoke(cli, ["apikey", "create", "x", "--scope", "root"]).exit_code == 2


def test_unreachable_redis_message_masks_the_password(
    cli: typer.Typer, redis_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = redis_settings.model_copy(
        update={"redis": redis_settings.redis.model_copy(update={"url": "redis://:hunter2@127.0.0.1:1/0"})}
    )
    monkeypatch.setattr("core.cli.get_settings", lambda: closed)
    result = CliRunner().invoke(cli, ["apikey", "list"])
    assert result.exit_code == 1
    assert "redis://:***@127.0.0.1:1/0" in result.output and "hunter2" not in result.output
