"""``python -m spark_jobs stream|backfill``: the Spark jobs without the rest of the CLI."""

from __future__ import annotations

import typer

from spark_jobs.cli import backfill, stream

app = typer.Typer(
    name="spark_jobs", no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False
)
app.command("stream")(stream)
app.command("backfill")(backfill)

if __name__ == "__main__":
    app(prog_name="python -m spark_jobs")
