"""``cryptopulse worker``: run the faust stream worker (clean, score, live counters)."""

from __future__ import annotations

from typing import Annotated

import typer

from core.logs import configure_logging
from core.settings import Settings


def run_worker(settings: Settings, *, loglevel: str | None = None) -> None:
    """Start faust's worker for the configured app in this process (blocks until stopped)."""
    from faust.worker import Worker

    from stream_processors.app import create_app
    from stream_processors.liveness import restart_if_stalled, wait_for_previous_session

    configure_logging(settings)
    wait_for_previous_session(settings)
    app = create_app(settings)
    worker = Worker(
        app,
        loglevel=(loglevel or settings.log_level).lower(),
        override_logging=False,  # keep CryptoPulse's structured logging
        quiet=True,  # no faust banner on stdout
    )
    try:
        worker.execute_from_commandline()
    finally:  # faust stops by SystemExit; a stall (see liveness) restarts the worker instead
        restart_if_stalled(app.stalled)


def register(app: typer.Typer) -> None:
    """Add the ``worker`` command to the CLI."""

    @app.command("worker")
    def worker(
        web_port: Annotated[
            int | None, typer.Option(help="faust web port for /metrics (default settings.stream.web_port)")
        ] = None,
        loglevel: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = None,
    ) -> None:
        """Run the stream worker: raw -> clean -> scored, dead letters, live counters, /metrics."""
        from core.cli import load_cli_settings, override

        settings = override(load_cli_settings(), "stream", web_port=web_port)
        run_worker(settings, loglevel=loglevel)
