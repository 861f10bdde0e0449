"""``cryptopulse alerting serve``: alert delivery to subscribers (see :mod:`alerting.service`)."""

from __future__ import annotations

from typing import Annotated

import typer

from core.cli import command_group

app = command_group("alerting", "Alert delivery: signed webhooks to subscribers, Alertmanager's receiver.")


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="HTTP port (default: alerting.port)")] = None,
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning", help="a new consumer group starts at the oldest alert (default: from now on)"
        ),
    ] = False,
) -> None:
    """Consume the alerts topic and deliver each alert to its subscribers until SIGTERM."""
    from core.cli import fail, load_cli_settings

    settings = load_cli_settings()
    try:
        from alerting.service import AlertingService

        service = AlertingService(settings, start="beginning" if from_beginning else "end")
        service.serve(port=port)
    except OSError as exc:  # the port is taken, or no broker could be configured
        raise fail(f"alerting service could not start: {exc}") from None


def register(root: typer.Typer) -> None:
    """Add the ``alerting`` command group to the root ``cryptopulse`` app."""
    root.add_typer(app, name="alerting")
