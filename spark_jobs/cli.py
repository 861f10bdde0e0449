"""``cryptopulse spark stream|backfill|history`` and ``cryptopulse backfill``: the Spark trend jobs.

Wired into the main CLI with ``register(app)``; ``python -m spark_jobs stream|backfill``
runs the same commands without the rest of the CLI.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from core.cli import command_group

if TYPE_CHECKING:
    from spark_jobs.history import SeedResult

Master = Annotated[
    str | None,
    typer.Option(
        "--master", help="Spark master, e.g. spark://host:7077 or yarn (default: settings.spark.master)."
    ),
]


def stream(
    master: Master = None,
    no_metrics: Annotated[
        bool, typer.Option("--no-metrics", help="Do not serve Prometheus /metrics.")
    ] = False,
    available_now: Annotated[
        bool, typer.Option("--available-now", help="Process what Kafka holds now, then exit.")
    ] = False,
) -> None:
    """Run the streaming trend job (Kafka -> event-time windows -> Redis views + Parquet lake)."""
    from core.cli import load_cli_settings

    settings = load_cli_settings()
    if available_now:
        from spark_jobs.session import build_spark
        from spark_jobs.stream import start_stream

        spark = build_spark(settings, master=master)
        try:
            start_stream(spark, settings, available_now=True).await_termination()
        finally:
            spark.stop()
        typer.echo("stream: backlog processed")
        return
    from core.cli import fail
    from spark_jobs.stream import StreamFailed, run_stream

    typer.echo(
        f"spark stream: master={master or settings.spark.master} "
        f"metrics={settings.spark.metrics_host}:{settings.spark.metrics_port} (Ctrl-C to stop)"
    )
    try:
        run_stream(settings, master=master, serve_metrics=not no_metrics)
    except StreamFailed as exc:
        # non-zero: the supervisor restarts the job, which resumes from its checkpoint
        raise fail(f"{exc}; restart resumes from the checkpoint") from None


def backfill(
    from_: Annotated[
        datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First UTC day (YYYY-MM-DD).")
    ],
    to: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last UTC day, inclusive.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Re-score texts with models:/NAME@ALIAS, models:/NAME/VERSION or a folder."
        ),
    ] = None,
    source: Annotated[str, typer.Option("--source", help="History to read: kafka or lake.")] = "kafka",
    master: Master = None,
) -> None:
    """Recompute trend windows of [--from, --to] and replace them in Redis and the lake (idempotent)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from core.cli import fail, load_cli_settings
    from spark_jobs.backfill import STAGES, BackfillError, run_backfill
    from spark_jobs.session import SparkUnavailable, backfill_spark

    if source not in ("kafka", "lake"):
        raise typer.BadParameter("--source must be kafka or lake")
    if to.date() < from_.date():
        raise typer.BadParameter(f"--to {to:%Y-%m-%d} is before --from {from_:%Y-%m-%d}")
    settings = load_cli_settings()
    console = Console()
    try:
        spark, where = backfill_spark(settings, app_name=f"{settings.spark.app_name}-backfill", master=master)
    except SparkUnavailable as exc:
        raise fail(str(exc)) from None
    console.print(f"backfill runs in {where}")
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("starting", total=STAGES)
            result = run_backfill(
                spark,
                settings,
                from_.date(),
                to.date(),
                source=source,  # type: ignore[arg-type]
                model=model,
                progress=lambda msg, n: progress.update(task, description=msg, completed=n),
            )
    except BackfillError as exc:
        raise fail(str(exc)) from None
    finally:
        spark.stop()
    table = Table(title=f"backfill {result.start}..{result.end} ({result.source})", min_width=44)
    table.add_column("what")
    table.add_column("value", justify="right")
    for name, value in (
        ("model version", result.model_version or "(as scored)"),
        ("events", f"{result.events:,}"),
        ("window aggregates", f"{result.aggregates:,}"),
        ("trend windows", f"{result.trends:,}"),
        ("lake partitions replaced", f"{result.lake_partitions:,}"),
        ("Redis windows written", f"{result.redis_windows:,}"),
        ("stale windows removed", f"{result.stale_removed:,}"),
        ("seconds", f"{result.seconds:.1f}"),
        ("events/s", f"{result.events_per_second:,.0f}"),
    ):
        table.add_row(name, str(value))
    console.print(table)


def history(
    force: Annotated[
        bool, typer.Option("--force", help="Seed again (new end time) even if this lake was seeded.")
    ] = False,
    end: Annotated[
        datetime | None,
        typer.Option(
            "--end",
            formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M%z"],
            help="End of the history (UTC unless a zone is given; default: now).",
        ),
    ] = None,
) -> None:
    """Seed the bundled week of crypto posts and prices into the lake and Redis (first start).

    Scores the texts with the champion, writes them into the events lake, backfills every
    trend window and sets the latest prices. A second run is a no-op (see docs/spark.md).
    """
    from datetime import UTC

    from core.cli import console, fail, load_cli_settings
    from spark_jobs.history import HistoryError, seed_history

    settings = load_cli_settings()
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    try:
        result = seed_history(
            settings, end=end, force=force, progress=lambda message: console.print(f"  history: {message}")
        )
    except HistoryError as exc:
        raise fail(str(exc)) from None
    console.print(describe_seed(result))


def describe_seed(result: SeedResult) -> str:
    """One line about a seed (``up`` prints it too)."""
    if result.start is None or result.end is None:  # already seeded, or skipped
        return f"history: {result.status} ({result.reason})"
    line = (
        f"history: {result.status} {result.start:%Y-%m-%d %H:%M} .. {result.end:%Y-%m-%d %H:%M} UTC, "
        f"{result.posts:,} posts, {result.prices:,} price ticks, {result.trend_windows:,} trend windows "
        f"in {result.seconds:.1f}s"
    )
    return line + (f"; {result.reason}" if result.reason else "")


def register(app: typer.Typer) -> None:
    """Add the ``spark`` sub-command group (``stream``, ``backfill``, ``history``) and the
    top-level ``backfill`` command."""
    spark_app = command_group(
        "spark", "Spark trend jobs: windows from Kafka into Redis views and the Parquet lake."
    )
    spark_app.command("stream")(stream)
    spark_app.command("backfill")(backfill)
    spark_app.command("history")(history)
    app.add_typer(spark_app, name="spark")
    app.command("backfill")(backfill)
