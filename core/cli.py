"""What every ``cryptopulse`` command shares: consoles, settings at start-up, errors."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from core.logs import configure_logging
from core.redact import mask_url_credentials
from core.settings import Settings, SettingsError, get_settings

# Wide output when piped (logs, CI) so tables are not folded into unreadable columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise.

    URL credentials are masked: messages name servers and quote their errors.
    """
    err_console.print(f"[red]error:[/red] {escape(mask_url_credentials(message))}", highlight=False)
    return typer.Exit(code)


def load_cli_settings() -> Settings:
    """Validate settings at start-up; a bad value exits 2 naming the variable."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        raise fail(str(exc), code=2) from None
    configure_logging(settings)
    return settings


def override(settings: Settings, section: str, **values: Any) -> Settings:
    """A copy of ``settings`` with command-line flags (those not ``None``) beating the env."""
    given = {key: value for key, value in values.items() if value is not None}
    if not given:
        return settings
    return settings.model_copy(update={section: getattr(settings, section).model_copy(update=given)})


def command_group(name: str, help: str) -> typer.Typer:
    """A Typer app configured like every ``cryptopulse`` command group: ``--help`` when
    called bare, no shell-completion flags, and no local variables (secrets) in tracebacks."""
    return typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )
