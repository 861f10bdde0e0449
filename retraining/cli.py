"""``cryptopulse retrain run|status|serve|evaluate``: the learning loop's retraining.

``serve`` is what ``cryptopulse up`` supervises; ``run`` is one run now, in the foreground;
``status`` shows every trigger and the saved state; ``evaluate`` is the last child of a run.
"""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from core.cli import command_group

app = command_group("retrain", "Retraining: triggers (schedule, feedback, drift), runs and their state.")

TrainCommand = Annotated[
    str | None,
    typer.Option(
        "--train-command",
        help="run this instead of `cryptopulse train` (e.g. training on another machine); "
        "`retrain evaluate` still follows",
    ),
]


def _settings() -> Any:
    from core.cli import fail, load_cli_settings
    from retraining.triggers import validate_cron

    settings = load_cli_settings()
    try:
        validate_cron(settings.learning.retrain_schedule)
    except ValueError as exc:
        raise fail(str(exc), code=2) from None
    return settings


def _retrainer(settings: Any, train_command: str | None) -> Any:
    from retraining.service import Retrainer, default_steps

    argv = shlex.split(train_command) if train_command else None
    return Retrainer(settings, steps=default_steps(settings, argv))


@app.command()
def run(train_command: TrainCommand = None) -> None:
    """Train now, in the foreground: exit 0 succeeded, 1 failed, 130 cancelled, 75 busy."""
    import signal

    from core.cli import fail
    from retraining.service import RunBusy
    from retraining.triggers import Trigger

    settings = _settings()
    retrainer = _retrainer(settings, train_command)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, retrainer.request_stop)
    try:
        result = retrainer.run(Trigger.MANUAL, ("retrain run",))
    except RunBusy as exc:
        raise fail(f"{exc}; try again when it has finished", code=75) from None
    typer.echo(
        f"run {result.outcome} (trigger manual, version {result.version or 'none registered'}); "
        f"log: {result.log_path}"
    )
    if result.feedback:
        typer.echo("feedback: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.feedback.items())))
    raise typer.Exit(result.exit_code)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False) -> None:
    """Each trigger's state now (schedule, feedback labels, drift streak) and the last run."""
    from retraining.service import Retrainer
    from retraining.triggers import state_summary

    settings = _settings()
    retrainer = Retrainer(settings)
    state, decision = retrainer.observe(save=False)
    learning = settings.learning
    report: dict[str, Any] = {
        "would_fire": decision.fire.value if decision.fire else None,
        "reasons": list(decision.reasons),
        "schedule": {
            "cron": learning.retrain_schedule,
            "next": decision.schedule.next.isoformat(),
            "due": decision.schedule.due,
        },
        "feedback": {"pending": decision.pending_labels, "threshold": learning.retrain_feedback_labels},
        "drift": {
            "enabled": learning.retrain_on_drift,
            "streak": decision.drift_streak,
            "threshold": learning.retrain_drift_alerts,
        },
        "backoff_until": decision.backoff_until.isoformat() if decision.backoff_until else None,
        "profile": learning.retrain_profile,
        "state": state_summary(state),
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    from core.cli import console

    console.print(
        f"schedule  {learning.retrain_schedule} (UTC), next {decision.schedule.next:%Y-%m-%d %H:%M} UTC"
    )
    console.print(f"feedback  {decision.pending_labels} / {learning.retrain_feedback_labels} new labels")
    drift = f"{decision.drift_streak} / {learning.retrain_drift_alerts} windows in a row"
    console.print(f"drift     {drift if learning.retrain_on_drift else 'off'}")
    if decision.backoff_until:
        console.print(
            f"back-off  until {decision.backoff_until:%Y-%m-%d %H:%M} UTC (last run {state.last_outcome})"
        )
    last = (
        f"{state.last_run_started:%Y-%m-%d %H:%M} UTC, {state.last_trigger}, {state.last_outcome}"
        f", version {state.last_version or '-'}"
        if state.last_run_started
        else "none yet"
    )
    console.print(f"last run  {last}")
    if not retrainer.state_file.exists():
        console.print("state     none yet: the service records a baseline at its first check")
    console.print(
        f"would run {decision.fire.value if decision.fire else 'no'}  (profile {learning.retrain_profile})"
    )


@app.command()
def serve(
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="override learning.orchestrator_metrics_port")
    ] = None,
    check_interval: Annotated[float, typer.Option(min=0.1, help="seconds between trigger checks")] = 60.0,
    train_command: TrainCommand = None,
) -> None:
    """The supervised service: check the triggers every minute, run training when one fires."""
    settings = _settings()
    retrainer = _retrainer(settings, train_command)
    retrainer.check_interval_s = check_interval
    try:
        retrainer.serve(metrics_port=metrics_port)
    except OSError as exc:
        from core.cli import fail

        raise fail(f"cannot serve metrics: {exc}", code=1) from None


@app.command()
def evaluate(
    since: Annotated[
        str, typer.Option(help="ISO time the run started: versions created after it are its own")
    ],
) -> None:
    """The last step of a run: evaluate the new version on the newest feedback, then offer it
    for auto-promotion; prints one ``retrain-result`` JSON line."""
    from core.cli import fail
    from retraining.evaluate import RESULT_PREFIX, finish_run

    settings = _settings()
    try:
        started = datetime.fromisoformat(since)
    except ValueError:
        raise fail(f"--since {since!r} is not an ISO date-time", code=2) from None
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    try:
        result = finish_run(settings, started)
    except Exception as exc:
        if type(exc).__name__ in {"MlflowException", "ConnectionError", "RestException"}:
            raise fail(f"MLflow at {settings.mlflow.uri} failed: {exc}") from exc
        raise
    typer.echo(RESULT_PREFIX + json.dumps(result))


def register(root: typer.Typer) -> None:
    """Add the ``retrain`` command group to the root ``cryptopulse`` app."""
    root.add_typer(app, name="retrain")
