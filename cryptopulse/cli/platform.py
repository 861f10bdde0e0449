"""``cryptopulse up|status|down|logs|topics``: the local platform and its topics.

Thin commands over :mod:`cryptopulse.platform` (the home's supervisord runs the services;
cryptopulse configures it, probes readiness and finds its processes) and the topic catalog.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from core.cli import console, err_console, fail, load_cli_settings
from cryptopulse.platform.manager import ServiceStatus, SupervisorStatus

if TYPE_CHECKING:
    from core.settings import Settings

app = typer.Typer()


@app.command()
def up(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to start (default: the whole pipeline).")
    ] = None,
    platform_only: Annotated[
        bool, typer.Option("--platform-only", help="Only Kafka, Redis, MLflow and Prometheus.")
    ] = False,
    train: Annotated[
        bool,
        typer.Option(
            "--train/--no-train", help="Train and register the default model when none is registered."
        ),
    ] = True,
    history: Annotated[
        bool,
        typer.Option(
            "--history/--no-history",
            help="Seed the bundled week of history into the lake and Redis on a first start "
            "(also off with CRYPTOPULSE_SPARK__HISTORY_ON_FIRST_UP=false).",
        ),
    ] = True,
) -> None:
    """Start the local pipeline under supervisord: platform, topics, default model, the
    bundled history (first start only), then the pipeline processes.

    Idempotent: running services are left alone (also ones that run without supervision,
    which are reported), and a port held by a process cryptopulse did not start is reported
    instead of clobbered. supervisord restarts a crashed service and gives up on one that
    keeps failing (see `cryptopulse status`).
    """
    from core.kafka import ensure_topics
    from cryptopulse.platform.manager import Platform
    from cryptopulse.platform.ownership import PortInUseError
    from cryptopulse.platform.pipeline import ALL_SERVICES
    from cryptopulse.platform.services import PLATFORM_SERVICES, ServiceError
    from schemas.topics import CATALOG

    settings = load_cli_settings()
    manager = Platform(settings, ALL_SERVICES)
    platform_names = [cls.name for cls in PLATFORM_SERVICES]
    if services is None:
        services = platform_names if platform_only else [s.name for s in manager.services]
    started = time.monotonic()

    def report(message: str) -> None:
        console.print(f"  {message}")

    try:
        manager.up([name for name in services if name in platform_names], report=report)
        if "kafka" in services:
            for topic in ensure_topics(settings, CATALOG):
                verb = "created" if topic.created else "exists"
                report(f"topic {topic.name}: {verb} ({topic.partitions} partitions)")
        pipeline = [name for name in services if name not in platform_names]
        if pipeline and train:
            from model_export.registry import ensure_default_model

            version = ensure_default_model(settings, progress=True)
            report(f"model {settings.mlflow.registered_model}: champion is version {version}")
        # With the Spark job, which owns the lake (and skipped once its archive has started).
        if "spark" in pipeline and history and settings.spark.history_on_first_up:
            _seed_history(settings, report)
        manager.up(pipeline, report=report)
    except (PortInUseError, ServiceError, KeyError) as exc:
        raise fail(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    console.print(f"[green]up[/green] in {time.monotonic() - started:.1f}s")
    _print_status(manager.status(services), manager.supervisor_status())


def _seed_history(settings: Settings, report: Callable[[str], None]) -> None:
    """Load the bundled history before the pipeline starts, so the first charts, z-scores and
    correlations have a week behind them; a no-op once seeded (marker in the lake).

    Runs before the stream job starts: the seed writes beside the events archive, which the
    stream's file sink would otherwise own (see ``spark_jobs.history``).
    """
    from spark_jobs.cli import describe_seed
    from spark_jobs.history import HistoryError, seed_history

    try:
        result = seed_history(settings, progress=lambda message: report(f"history: {message}"))
    except HistoryError as exc:
        raise fail(f"{exc} (start without it: cryptopulse up --no-history)") from None
    report(describe_seed(result))


def _print_status(statuses: list[ServiceStatus], supervisor: SupervisorStatus) -> bool:
    table = Table(title="CryptoPulse services")
    for column in ("service", "state", "supervisor", "restarts", "pid", "port", "version", "url"):
        table.add_column(column)
    all_up = True
    for st in statuses:
        all_up &= st.up
        state = "[green]up[/green]" if st.up else "[red]down[/red]"
        if st.detail:
            state += f" ({st.detail})"
        supervision = st.state
        if st.gave_up:
            supervision = "[red]FATAL (gave up)[/red]"
        elif st.state == "UNSUPERVISED":
            supervision = "[yellow]UNSUPERVISED[/yellow]"
        restarts = "-" if st.restarts is None else str(st.restarts)
        table.add_row(
            st.name, state, supervision, restarts, str(st.pid or "-"), str(st.port), st.version, st.url
        )
    console.print(table)
    if supervisor.running:
        console.print(
            f"supervisord: pid {supervisor.pid}; for experts: "
            f"`supervisorctl -c {supervisor.config_path} status`"
        )
    else:
        console.print(f"supervisord: {supervisor.detail}")
    return all_up


@app.command()
def status(
    services: Annotated[list[str] | None, typer.Argument(help="Services to show (default: all).")] = None,
) -> None:
    """Show each service (up/down, supervisor state, restarts, pid, port, version); exit 1 when
    any is down.

    A service that runs without supervision (supervisord was killed, or an older cryptopulse
    started it) is shown as UNSUPERVISED with the command that fixes it; one that kept
    crashing until supervisord gave up is shown as FATAL.
    """
    from cryptopulse.platform.manager import Platform
    from cryptopulse.platform.pipeline import ALL_SERVICES

    settings = load_cli_settings()
    manager = Platform(settings, ALL_SERVICES)
    try:
        statuses = manager.status(services)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    if not _print_status(statuses, manager.supervisor_status()):
        raise typer.Exit(1)


@app.command()
def down(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to stop (default: everything of this home).")
    ] = None,
) -> None:
    """Stop services in reverse order: through supervisord, then every process that still
    carries this home's CRYPTOPULSE_OWNER marker (also ones supervisord lost). Without
    arguments, supervisord itself and everything else of this home stop too. Processes of
    other homes or not started by cryptopulse are never signalled."""
    from cryptopulse.platform.manager import Platform
    from cryptopulse.platform.pipeline import ALL_SERVICES

    settings = load_cli_settings()
    try:
        Platform(settings, ALL_SERVICES).down(services, report=lambda msg: console.print(f"  {msg}"))
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None


@app.command()
def logs(
    service: Annotated[
        str, typer.Argument(help="Service name, e.g. kafka, redis, mlflow, prometheus, or supervisord.")
    ],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="How many lines to show.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
) -> None:
    """Print the last lines of a service's log (and follow it with -f, across rotations).

    supervisord writes the logs and rotates them at CRYPTOPULSE_LOG_ROTATE_MB (one old copy,
    NAME.log.1); `supervisord` shows its own log (starts, exits, restarts, give-ups).
    """
    from cryptopulse.platform.manager import Platform, tail
    from cryptopulse.platform.pipeline import ALL_SERVICES

    settings = load_cli_settings()
    manager = Platform(settings, ALL_SERVICES)
    try:
        path: Path = (
            manager.supervisor.log_path if service == "supervisord" else manager.service(service).log_path
        )
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    if not path.exists():
        raise fail(f"no log for {service} yet ({path}); has it been started with `cryptopulse up`?")
    sys.stdout.write(tail(path, lines) + "\n")
    if follow:
        _follow(path)


def _follow(path: Path) -> None:
    """Print lines appended to ``path``, reopening it when supervisord rotates it."""
    handle = path.open("r", encoding="utf-8", errors="replace")
    handle.seek(0, 2)
    try:
        while True:
            line = handle.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
                continue
            try:
                rotated = path.stat().st_ino != os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                rotated = False
            if rotated:
                handle.close()
                handle = path.open("r", encoding="utf-8", errors="replace")
            else:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        handle.close()


@app.command()
def topics(
    create: Annotated[bool, typer.Option("--create", help="Create missing catalog topics first.")] = False,
) -> None:
    """List the catalog topics: partitions, key, retention, cleanup policy, schema, message counts."""
    from confluent_kafka import KafkaException

    from core.kafka import broker_ready, ensure_topics, topic_watermarks
    from schemas.topics import CATALOG

    settings = load_cli_settings()
    if not broker_ready(settings):
        raise fail(f"Kafka is not reachable at {settings.kafka.bootstrap}; run `cryptopulse up`")
    if create:
        ensure_topics(settings, CATALOG)
    catalog = {spec.name(settings): spec for spec in CATALOG}
    try:
        watermarks = topic_watermarks(settings, catalog.__contains__)
    except KafkaException as exc:
        raise fail(f"Kafka at {settings.kafka.bootstrap} did not answer: {exc}") from None
    table = Table(title=f"Topics on {settings.kafka.bootstrap}")
    for column in ("topic", "partitions", "messages", "key", "retention", "cleanup", "schema"):
        table.add_column(column)
    missing = 0
    for name, spec in catalog.items():
        offsets = watermarks.get(name)
        if offsets is None:
            missing += 1
            table.add_row(name, "[red]missing[/red]", "-", spec.key, "-", spec.cleanup_policy, "-")
            continue
        table.add_row(
            name,
            str(len(offsets)),
            str(sum(high - low for _, low, high in offsets)),
            spec.key,
            f"{spec.retention_ms // 3_600_000}h" if spec.retention_ms >= 0 else "forever",
            spec.cleanup_policy,
            ", ".join(m.record_type for m in spec.value_schemas),
        )
    console.print(table)
    if missing:
        err_console.print(f"{missing} catalog topics are missing; run `cryptopulse topics --create`")
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add the platform commands to the root ``cryptopulse`` app."""
    for command in app.registered_commands:
        root.registered_commands.append(command)
