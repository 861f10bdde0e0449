"""``cryptopulse produce reddit|news|prices|replay``: run one producer in the foreground.

Each command runs until SIGTERM/SIGINT (then flushes and exits 0), or for ``--cycles``
polls. Secrets come only from settings / environment and are never echoed.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from core.cli import command_group

app = command_group(
    "produce", "Run a producer: real connectors (reddit, news, prices) or the offline replay."
)

Cycles = Annotated[int | None, typer.Option("--cycles", min=1, help="Stop after this many polls.")]
MetricsPort = Annotated[
    int | None, typer.Option("--metrics-port", min=1, max=65535, help="Override producer.metrics_port.")
]
NoMetrics = Annotated[bool, typer.Option("--no-metrics", help="Do not serve Prometheus metrics.")]


def _run(name: str, *, cycles: int | None, metrics_port: int | None, no_metrics: bool, **kwargs: Any) -> None:
    from core.cli import load_cli_settings, override
    from producers.runner import run

    settings = override(load_cli_settings(), "producer", metrics_port=metrics_port)
    stats = run(name, settings, cycles=cycles, serve_metrics=not no_metrics, **kwargs)
    produced = sum(stats.produced.values())
    typer.echo(
        f"{name}: {produced} records produced, {stats.dead_lettered} dead-lettered, "
        f"{stats.cycles} cycles ({stats.failed_cycles} failed)"
    )
    if stats.failed_cycles and stats.failed_cycles == stats.cycles:
        raise typer.Exit(1)


@app.command()
def reddit(cycles: Cycles = None, metrics_port: MetricsPort = None, no_metrics: NoMetrics = False) -> None:
    """New posts and comments of the configured subreddits (OAuth2 app-only, or public .json)."""
    _run("reddit", cycles=cycles, metrics_port=metrics_port, no_metrics=no_metrics)


@app.command()
def news(cycles: Cycles = None, metrics_port: MetricsPort = None, no_metrics: NoMetrics = False) -> None:
    """RSS/Atom feeds with conditional GET, plus NewsAPI when a key is configured."""
    _run("news", cycles=cycles, metrics_port=metrics_port, no_metrics=no_metrics)


@app.command()
def prices(cycles: Cycles = None, metrics_port: MetricsPort = None, no_metrics: NoMetrics = False) -> None:
    """CoinGecko /coins/markets (fallback /simple/price) for the tracked coins."""
    _run("prices", cycles=cycles, metrics_port=metrics_port, no_metrics=no_metrics)


@app.command()
def replay(
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Stop after this many texts.")] = None,
    metrics_port: MetricsPort = None,
    no_metrics: NoMetrics = False,
) -> None:
    """Replay bundled real texts as a live stream, with random-walk price ticks (no internet)."""
    _run("replay", cycles=None, metrics_port=metrics_port, no_metrics=no_metrics, limit=limit)


def register(root: typer.Typer) -> None:
    """Add the ``produce`` command group to the root ``cryptopulse`` app."""
    root.add_typer(app, name="produce")
