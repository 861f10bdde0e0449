"""The ``cryptopulse`` command line: one front door for every component."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="cryptopulse",
    help="CryptoPulse: real-time cryptocurrency sentiment intelligence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
