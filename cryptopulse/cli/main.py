"""The ``cryptopulse`` command line: one front door for every component."""

from __future__ import annotations

from typing import Annotated

import typer

from core.cli import command_group, console

app = command_group("cryptopulse", "CryptoPulse: real-time cryptocurrency sentiment intelligence.")


def _print_version(value: bool) -> None:
    if value:
        from core.version import __version__

        console.print(f"cryptopulse {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """CryptoPulse: real-time cryptocurrency sentiment intelligence."""


def _register_components() -> None:
    """Each stage contributes its own commands; heavy imports stay inside them."""
    from alerting import cli as alerting_cli
    from api import cli as api_cli
    from cryptopulse.cli import platform, subscribe
    from model_export import cli as model_cli
    from producers import cli as producers_cli
    from retraining import cli as retrain_cli
    from spark_jobs import cli as spark_cli
    from stream_processors import cli as stream_cli

    for module in (
        platform,
        model_cli,
        producers_cli,
        stream_cli,
        spark_cli,
        api_cli,
        retrain_cli,
        alerting_cli,
        subscribe,
    ):
        module.register(app)


_register_components()
