"""``cryptopulse spark stream`` and ``cryptopulse backfill``: the Spark trend jobs.

Wired into the main CLI with ``register(app)``; ``python -m spark_jobs stream|backfill``
runs the same commands without the rest of the CLI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from core.cli import command_group

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
    from spark_jobs.session import build_spark

    if source not in ("kafka", "lake"):
        raise typer.BadParameter("--source must be kafka or lake")
    if to.date() < from_.date():
        raise typer.BadParameter(f"--to {to:%Y-%m-%d} is before --from {from_:%Y-%m-%d}")
    settings = load_cli_settings()
    console = Console()
    spark = build_spark(settings, app_name=f"{settings.spark.app_name}-backfill", master=master)
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


def register(app: typer.Typer) -> None:
    """Add the ``spark`` sub-command group (``stream``) and the top-level ``backfill`` command."""
    spark_app = command_group(
        "spark", "Spark trend jobs: windows from Kafka into Redis views and the Parquet lake."
    )
    spark_app.command("stream")(stream)
    spark_app.command("backfill")(backfill)
    app.add_typer(spark_app, name="spark")
    app.command("backfill")(backfill)
