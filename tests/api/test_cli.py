"""``cryptopulse apikey create|list|revoke`` and the ``api``/``dashboard`` commands' registration."""

from __future__ import annotations

import re

import pytest
import redis
import typer
from typer.testing import CliRunner

from api import cli as api_cli
from api.security import KeyVerifier
from cryptopulse.core.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(redis_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setattr("cryptopulse.core.cli.get_settings", lambda: redis_settings)
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
