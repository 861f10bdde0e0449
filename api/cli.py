"""``cryptopulse api``, ``cryptopulse dashboard`` and ``cryptopulse apikey create|list|revoke``.

The API runs under uvicorn with ``api.workers`` processes (Prometheus multi-process
mode when more than one); the dashboard is Streamlit reading the API only. API keys
are managed directly in Redis (only their sha256 is stored), optionally with scopes.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.scopes import Scope
from core.cli import command_group

apikey_app = command_group("apikey", "Manage API keys (stored hashed in Redis).")

DASHBOARD_SCRIPT = Path(__file__).resolve().parent / "dashboard" / "app.py"


def api(
    host: Annotated[str | None, typer.Option(help="Bind address (default api.host).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default api.port).")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Worker processes (default api.workers).")
    ] = None,
) -> None:
    """Serve the REST API (FastAPI under uvicorn) in the foreground."""
    import uvicorn

    from core.cli import load_cli_settings

    settings = load_cli_settings()
    n = workers or settings.api.workers
    if n > 1:
        # Workers share /metrics through files; stale ones from a previous run would double-count.
        metrics_dir = settings.run_dir / "api-metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    uvicorn.run(
        "api.main:app",
        factory=True,
        host=host or settings.api.host,
        port=port or settings.api.port,
        workers=n,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        # X-Forwarded-For is believed only from api.trusted_proxies, which the app itself
        # applies; uvicorn's own default would trust 127.0.0.1.
        proxy_headers=False,
        timeout_graceful_shutdown=5,
    )


def dashboard(
    host: Annotated[str | None, typer.Option(help="Bind address (default dashboard.host).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default dashboard.port).")] = None,
) -> None:
    """Serve the Streamlit dashboard in the foreground (it reads the API only)."""
    from core.cli import load_cli_settings

    settings = load_cli_settings()
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(DASHBOARD_SCRIPT),
        "--server.address",
        host or settings.dashboard.host,
        "--server.port",
        str(port or settings.dashboard.port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "minimal",
    ]
    # exec keeps the pid, so `cryptopulse down` stops Streamlit itself.
    os.execv(sys.executable, argv)  # nosec B606 # our own interpreter and module; argv holds settings values, no shell


def _redis():  # type: ignore[no-untyped-def]
    import redis

    from core.cli import fail, load_cli_settings

    settings = load_cli_settings()
    client = redis.Redis.from_url(settings.redis.dsn, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        # fail() masks the DSN's password.
        raise fail(f"Redis at {settings.redis.dsn} is not reachable: {exc}") from None
    return client, settings.redis.key_prefix


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    rate_limit: Annotated[
        int | None,
        typer.Option("--rate-limit", min=1, help="Requests per window (default api.rate_limit_per_minute)."),
    ] = None,
    scope: Annotated[
        list[Scope] | None,
        typer.Option(
            "--scope",
            help=(
                "Grant a scope (repeatable); admin opens /v1/admin (raw messages, dead letters), "
                "label allows POST /v1/feedback (human labels for training)."
            ),
        ),
    ] = None,
) -> None:
    """Create a key; it is shown once (only its hash is stored)."""
    from api.security import create_api_key
    from core.cli import console, err_console

    client, prefix = _redis()
    key, record = create_api_key(
        client, prefix, name, rate_limit_per_minute=rate_limit, scopes=frozenset(scope or ())
    )
    granted = f" with scopes {', '.join(sorted(record.scopes))}" if record.scopes else ""
    err_console.print(
        f"created key [bold]{record.key_id}[/bold] for {name!r}{granted}; "
        "store it now, it is not shown again:"
    )
    console.print(key, soft_wrap=True)


@apikey_app.command("list")
def apikey_list() -> None:
    """List keys (id, name, created, status, rate limit, scopes); never the keys themselves."""
    from rich.table import Table

    from api.security import list_api_keys
    from core.cli import console

    client, prefix = _redis()
    table = Table("id", "name", "created", "status", "rate limit", "scopes")
    for k in list_api_keys(client, prefix):
        table.add_row(
            k.key_id,
            k.name,
            k.created.isoformat(),
            "revoked" if k.revoked else "active",
            str(k.rate_limit_per_minute or "default"),
            ",".join(sorted(k.scopes)) or "-",
        )
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="Key id from `apikey list`.")]) -> None:
    """Revoke a key (effective within api.key_cache_s seconds)."""
    from api.security import revoke_api_key
    from core.cli import console, fail

    client, prefix = _redis()
    if not revoke_api_key(client, prefix, key_id):
        raise fail(f"no API key with id {key_id!r}")
    console.print(f"revoked {key_id}")


def register(app: typer.Typer) -> None:
    """Add ``api``, ``dashboard`` and ``apikey`` to the root command."""
    app.command("api")(api)
    app.command("dashboard")(dashboard)
    app.add_typer(apikey_app, name="apikey")
