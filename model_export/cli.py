"""``cryptopulse train``, ``score`` and ``model list|promote|rollback|events|ensure-default``.

Wire into the main app with ``register(app)``. Heavy imports (torch, mlflow,
onnxruntime) happen inside the commands so ``cryptopulse --help`` stays fast.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from core.cli import command_group
from core.redact import mask_url_credentials
from scoring.labels import VERDICT_FIELDS

log = logging.getLogger(__name__)
console = Console(stderr=True, soft_wrap=True)

RESULT_COLUMNS = (*VERDICT_FIELDS[:-1], "coins", "model_version", "error")
PROGRESS_MIN_ROWS = 500

model_app = command_group(
    "model",
    "The sentiment model registry: list versions, promote one (gated), roll back, show the model events.",
)


def _settings() -> Any:
    from core.cli import load_cli_settings

    return load_cli_settings()


def _fail(message: str, code: int = 2) -> typer.Exit:
    from core.cli import fail

    return fail(message, code)


class TrainProfile(StrEnum):
    """What ``cryptopulse train`` trains."""

    default = "default"
    teacher = "teacher"
    distill = "distill"


def train(
    register_model: Annotated[
        bool,
        typer.Option(
            "--register/--no-register",
            help="log to MLflow and register a version (teacher: log to MLflow only, never registered)",
        ),
    ] = True,
    out: Annotated[
        Path | None, typer.Option(help="working directory (default: cache_dir/training/...)")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="cap on fine-tuning steps (smoke runs)")] = None,
    epochs: Annotated[
        float | None, typer.Option(help="fine-tuning epochs (default model.train_epochs; teacher: 2)")
    ] = None,
    limit_per_split: Annotated[
        int | None, typer.Option(help="rows per dataset and split (smoke runs)")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    profile: Annotated[
        TrainProfile,
        typer.Option(
            help="default: the served ensemble; teacher: all-mpnet-base-v2 fine-tuned for distillation "
            "(1 to 3 hours on 2 cores, checkpointed: run the same command again to resume); distill: the "
            "served ensemble with its MiniLM taught by the finished teacher"
        ),
    ] = TrainProfile.default,
    feedback: Annotated[
        bool,
        typer.Option(
            "--feedback/--no-feedback",
            help="join people's feedback labels (the feedback topic) into the train split",
        ),
    ] = True,
    teacher_dir: Annotated[
        Path | None,
        typer.Option(help="distill only: the teacher's model directory (default: the newest finished one)"),
    ] = None,
    base_model: Annotated[
        Path | None,
        typer.Option(help="teacher only: a Hugging Face encoder directory (default all-mpnet-base-v2)"),
    ] = None,
    distill_alpha: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="distill only: weight of the gold labels in the student's loss, the rest on the "
            "teacher's probabilities (default 0.1, chosen on validation: see the model card)",
        ),
    ] = None,
    distill_temperature: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            max=20.0,
            help="distill only: softens teacher and student alike (default 1: the teacher's "
            "calibrated probabilities as they are)",
        ),
    ] = None,
    distill_mix: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=REPEATS[:CAP]",
            help="distill only, repeatable: change one dataset's share of the transfer set, e.g. "
            "cryptolin=5 (its train rows 5 times) or tweeteval=1:8000 (8,000 rows drawn, once); "
            "CAP 'all' takes every row, REPEATS 0 leaves it out; others keep the default mix "
            "(model_export.distill.DISTILL_MIX)",
        ),
    ] = None,
    refit: Annotated[
        bool,
        typer.Option(
            "--refit/--no-refit",
            help="after model selection, refit the members on train + validation for release "
            "(test figures from before the refit are kept as before_refit_*; about twice the time)",
        ),
    ] = False,
) -> None:
    """Train the sentiment ensemble on data/, export int8 ONNX, evaluate, and register it in MLflow."""
    settings = _settings()
    overrides: dict[str, Any] = {}
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    if epochs is not None:
        overrides["epochs"] = epochs
    if limit_per_split is not None:
        overrides["limit_per_split"] = limit_per_split
    if refit:
        overrides["refit"] = True
    if profile is not TrainProfile.distill:
        for option, used in (
            ("--teacher-dir", teacher_dir is not None),
            ("--distill-alpha", distill_alpha is not None),
            ("--distill-temperature", distill_temperature is not None),
            ("--distill-mix", bool(distill_mix)),
        ):
            if used:
                raise _fail(f"{option} applies to --profile distill only")
    if profile is TrainProfile.teacher:
        if refit:
            raise _fail("--refit applies to the served ensemble (default and distill profiles)")
        _train_teacher(settings, overrides, base_model, track=register_model, out=out, progress=progress)
        return
    if base_model is not None:
        raise _fail("--base-model applies to --profile teacher only")
    if profile is TrainProfile.distill:
        overrides.update(
            _distilled_students(
                settings,
                overrides,
                teacher_dir,
                out,
                progress,
                distill_alpha,
                distill_temperature,
                distill_mix or [],
            )
        )
    if register_model:
        from model_export.feedback import FeedbackError
        from model_export.registry import train_and_register

        try:
            registered, result = train_and_register(
                settings, progress=progress, out_dir=out, with_feedback=feedback, **overrides
            )
        except FeedbackError as exc:
            raise _fail(f"{exc} (or train without it: --no-feedback)", code=1) from None
        except Exception as exc:
            if type(exc).__name__ in {"MlflowException", "ConnectionError", "RestException"}:
                raise _fail(f"MLflow at {settings.mlflow.uri} failed: {exc}") from exc
            raise
        typer.echo(
            f"registered {registered.name} version {registered.version} "
            f"({', '.join(registered.aliases) or 'no alias'})"
        )
    else:
        from model_export.train import TrainConfig
        from model_export.train import train as run_training

        work = out or settings.cache_dir / "training" / "local"
        snapshot = _feedback_snapshot(settings) if feedback else None
        config = TrainConfig.from_settings(settings, work, feedback=snapshot, **overrides)
        result = run_training(config, progress=progress)
    _print_metrics(result.metrics)
    typer.echo(f"artifact: {result.artifact_dir}")


def _feedback_snapshot(settings: Any) -> Any:
    from model_export.feedback import FeedbackError, snapshot_feedback

    try:
        return snapshot_feedback(settings)
    except FeedbackError as exc:
        raise _fail(f"{exc} (or train without it: --no-feedback)", code=1) from None


def _distilled_students(
    settings: Any,
    overrides: dict[str, Any],
    teacher_dir: Path | None,
    out: Path | None,
    progress: bool,
    alpha: float | None = None,
    temperature: float | None = None,
    mix: Sequence[str] = (),
) -> dict[str, Path]:
    """``train --profile distill``: teach MiniLM with the finished teacher, on the train split and,
    for a refit, on train + validation; the students' directories as ``TrainConfig`` fields."""
    from model_export.distill import DistillConfig, TeacherNotFoundError, distill_student, find_teacher
    from model_export.train import TrainConfig

    try:
        teacher = teacher_dir or find_teacher(settings.cache_dir)
    except TeacherNotFoundError as exc:
        raise _fail(str(exc), code=1) from None
    if not (teacher / "model.safetensors").exists():
        raise _fail(f"{teacher} holds no model.safetensors: not a teacher model directory", code=1)
    work = out or settings.cache_dir / "training" / "distill-run"
    config = TrainConfig.from_settings(settings, work, **overrides)
    defaults = DistillConfig(teacher_dir=teacher)  # alpha, temperature, mix where the options are left out
    try:
        distill = replace(
            defaults.with_mix(mix),
            alpha=defaults.alpha if alpha is None else alpha,
            temperature=defaults.temperature if temperature is None else temperature,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    students = {"transformer_dir": distill_student(config, distill, settings.cache_dir, progress=progress)}
    if config.refit:
        students["refit_transformer_dir"] = distill_student(
            config, distill, settings.cache_dir, progress=progress, splits=("train", "validation")
        )
    return students


def _train_teacher(
    settings: Any,
    overrides: dict[str, Any],
    base_model: Path | None,
    track: bool,
    out: Path | None,
    progress: bool,
) -> None:
    """``train --profile teacher``: fine-tune, evaluate and log the teacher (resumes a stopped run)."""
    from model_export.teacher import TEACHER_EXPERIMENT, TeacherConfig, TeacherInterrupted, run_teacher

    config = TeacherConfig(
        data_dir=settings.model.data_dir, seed=settings.model.seed, base_model=base_model, **overrides
    )
    try:
        result = run_teacher(settings, config, work_dir=out, track=track, progress=progress)
    except TeacherInterrupted as exc:
        raise _fail(f"teacher {exc}; run the same command again to resume", code=130) from None
    except Exception as exc:
        if type(exc).__name__ in {"MlflowException", "ConnectionError", "RestException"}:
            where = mask_url_credentials(settings.mlflow.uri)
            raise _fail(f"MLflow at {where} failed: {mask_url_credentials(str(exc))}") from exc
        raise
    table = Table(title="teacher, weighted F1 (test split never used in training)")
    for column in ("dataset", "test", "validation"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    table.add_row(
        "all", f"{result.metrics['test_weighted_f1']:.4f}", f"{result.metrics['validation_weighted_f1']:.4f}"
    )
    for dataset in sorted(result.report["test"]["datasets"]):
        table.add_row(
            dataset,
            f"{result.metrics[f'{dataset}_teacher_weighted_f1']:.4f}",
            f"{result.metrics.get(f'validation_{dataset}_teacher_weighted_f1', float('nan')):.4f}",
        )
    Console().print(table)
    typer.echo(f"teacher weights: {result.model_dir} (sha256 {result.weights_sha256})")
    if result.run_id is not None:
        typer.echo(f"MLflow run {result.run_id} (experiment {TEACHER_EXPERIMENT})")


def _print_metrics(metrics: dict[str, float]) -> None:
    table = Table(title="test split (never used in training)")
    table.add_column("system")
    table.add_column("weighted F1", justify="right")
    systems = (
        "ensemble",
        "transformer",
        "baseline_tfidf_lr",
        "baseline_vader",
        "crypto_lexicon",
        "baseline_majority",
    )
    for system in systems:
        key = "test_weighted_f1" if system == "ensemble" else f"test_{system}_weighted_f1"
        if key in metrics:
            table.add_row(system, f"{metrics[key]:.4f}")
    Console().print(table)
    for key in (
        "test_accuracy",
        "test_macro_f1",
        "test_log_loss",
        "test_ece",
        "latency_p50_ms",
        "latency_p95_ms",
        "throughput_texts_per_s",
    ):
        if key in metrics:
            typer.echo(f"{key}: {metrics[key]:.4f}")


# -- score -------------------------------------------------------------------------------


def _detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    raise _fail(f"{path}: unknown format {suffix!r}; use .csv or .jsonl")


def _read_rows(path: Path, fmt: str, column: str) -> list[tuple[object, str | None]]:
    """(value, row error) per input row, in order; a bad row never aborts the file."""
    try:
        raw = path.read_text("utf-8")
    except FileNotFoundError:
        raise _fail(f"input file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {path}: {exc}") from None
    rows: list[tuple[object, str | None]] = []
    if fmt == "csv":
        reader = csv.DictReader(raw.splitlines(keepends=True))
        if reader.fieldnames is None or column not in reader.fieldnames:
            found = ", ".join(reader.fieldnames or []) or "none"
            raise _fail(f"{path}: no column {column!r} (columns: {found}); choose one with --text-column")
        for record in reader:
            value = record.get(column)
            rows.append((value, None) if value is not None else (None, "missing value"))
        return rows
    seen_column = False
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append((None, f"line {number}: invalid JSON ({exc.msg})"))
            continue
        if not isinstance(record, dict):
            rows.append((None, f"line {number}: not a JSON object"))
        elif column not in record:
            rows.append((None, f"line {number}: no field {column!r}"))
        else:
            seen_column = True
            rows.append((record[column], None))
    if rows and not seen_column:
        raise _fail(f"{path}: no row has a field {column!r}; choose one with --text-column")
    return rows


def _batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def score(
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV or JSONL file to score")],
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write (same format as input)")],
    text_column: Annotated[str, typer.Option(help="column/field holding the text")] = "text",
    model: Annotated[
        str | None, typer.Option(help="models:/NAME@ALIAS, models:/NAME/VERSION or a directory")
    ] = None,
    keep_columns: Annotated[bool, typer.Option(help="copy the input columns before the results")] = False,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="ONNX Runtime threads (default: every core; a batch job owns the machine)"),
    ] = None,
) -> None:
    """Score every row of a CSV or JSONL file; a bad row gets an empty label and a reason in error."""
    from rich.progress import track

    from scoring.holder import load_runtime
    from scoring.registry_uri import ModelLoadError

    settings = _settings()
    fmt = _detect_format(input)
    rows = _read_rows(input, fmt, text_column)
    originals = _read_originals(input, fmt) if keep_columns else None
    uri = model or settings.model.uri
    try:
        runtime = load_runtime(uri, settings, threads=threads or os.cpu_count() or 1)
    except ModelLoadError as exc:
        raise _fail(f"cannot load model {uri}: {exc}") from None
    results: list[dict[str, Any]] = []
    batches = list(_batches(len(rows), settings.model.batch_size))
    iterator = (
        track(batches, description="scoring", console=console, transient=True)
        if len(rows) >= PROGRESS_MIN_ROWS
        else batches
    )
    for batch in iterator:
        texts = [rows[i][0] for i in batch]
        scored = runtime.score(texts)
        for i, s in zip(batch, scored, strict=True):
            row_error = rows[i][1]
            record = s.model_dump()
            if row_error is not None:
                record = {"label": None, "model_version": runtime.model_version, "error": row_error}
            results.append(record)
    _write(output, fmt, results, originals)
    errors = sum(1 for r in results if r.get("error"))
    console.print(
        f"scored {len(results) - errors} of {len(results)} rows with {runtime.model_version}"
        + (f"; {errors} rows with errors" if errors else "")
        + f" -> {output}"
    )


def _read_originals(path: Path, fmt: str) -> list[dict[str, Any]]:
    text = path.read_text("utf-8")
    if fmt == "csv":
        return [dict(r) for r in csv.DictReader(text.splitlines(keepends=True))]
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            value = {}
        out.append(value if isinstance(value, dict) else {})
    return out


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(value)
    if isinstance(value, float):
        return f"{value:.6f}"
    return value


def _write(
    path: Path, fmt: str, results: list[dict[str, Any]], originals: list[dict[str, Any]] | None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = list(dict.fromkeys(k for o in originals or [] for k in o if k not in RESULT_COLUMNS))
    try:
        with path.open("w", encoding="utf-8", newline="") as fh:
            if fmt == "csv":
                writer = csv.DictWriter(fh, fieldnames=[*extra, *RESULT_COLUMNS], extrasaction="ignore")
                writer.writeheader()
                for i, r in enumerate(results):
                    row = {k: _cell(v) for k, v in (originals[i] if originals else {}).items()}
                    row.update({c: _cell(r.get(c)) for c in RESULT_COLUMNS})
                    if not r.get("label"):
                        row["label"] = ""
                    writer.writerow(row)
            else:
                for i, r in enumerate(results):
                    obj = {
                        k: v
                        for k, v in (originals[i] if originals else {}).items()
                        if k not in RESULT_COLUMNS
                    }
                    obj.update({c: r.get(c) for c in RESULT_COLUMNS})
                    obj["label"] = obj["label"] or ""
                    obj["coins"] = list(obj["coins"] or [])
                    fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise _fail(f"cannot write {path}: {exc}") from None


# -- registry ----------------------------------------------------------------------------


@model_app.command("list")
def list_models() -> None:
    """Registered versions with aliases and the metrics the promotion gate compares."""
    from model_export.registry import list_versions

    settings = _settings()
    mlflow_at = mask_url_credentials(settings.mlflow.uri)
    try:
        versions = list_versions(settings)
    except Exception as exc:
        raise _fail(f"cannot reach MLflow at {mlflow_at}: {exc}") from None
    if not versions:
        typer.echo(f"no versions of {settings.mlflow.registered_model} registered at {mlflow_at}")
        return
    table = Table(title=f"{settings.mlflow.registered_model} @ {mlflow_at}")
    for col in ("version", "aliases", "weighted F1", "p95 ms", "run"):
        table.add_column(col)
    for v in versions:
        f1 = v.metrics.get("eval_weighted_f1")
        p95 = v.metrics.get("eval_latency_p95_ms")
        table.add_row(
            v.version,
            ", ".join(v.aliases),
            "" if f1 is None else f"{f1:.4f}",
            "" if p95 is None else f"{p95:.2f}",
            v.run_id[:12],
        )
    Console().print(table)


def _registry_failure(settings: Any, exc: Exception) -> typer.Exit:
    """MLflow (or Redis/Kafka behind the gate) did not answer: exit 1 with where, credentials masked."""
    where = mask_url_credentials(settings.mlflow.uri)
    return _fail(f"registry at {where} failed: {mask_url_credentials(str(exc))}", code=1)


def _print_checks(decision: Any, title: str) -> None:
    status_style = {"pass": "green", "fail": "bold red", "skip": "yellow"}  # nosec B105 # colours
    table = Table(title=title)
    for column in ("check", "result", "detail"):
        table.add_column(column)
    for check in decision.checks:
        style = status_style.get(check.status, "")
        table.add_row(check.name, f"[{style}]{check.status}[/{style}]", check.detail)
    Console(soft_wrap=True).print(table)


@model_app.command("promote")
def promote_model(
    version: Annotated[str, typer.Argument(help="registered version to make champion")],
    force: Annotated[
        bool, typer.Option(help="override a failing gate (the reasons are still printed)")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="print the gate's verdict, move nothing")] = False,
) -> None:
    """Make VERSION the champion if it passes the gate; prints every check and why.

    The gate weighs the offline metrics (model.promotion_* settings), live shadow agreement
    and accuracy on feedback labels (learning.promotion_* settings). Exit status 1 when the
    gate refuses, 2 when VERSION does not exist. The move is published on model.events.
    """
    from model_export.registry import RegistryError, evaluate, promote

    settings = _settings()
    try:
        decision = evaluate(version, settings) if dry_run else promote(version, settings, force=force)
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:
        if type(exc).__name__ in {"MlflowException", "ConnectionError", "RestException"}:
            raise _registry_failure(settings, exc) from None
        raise
    name = settings.mlflow.registered_model
    _print_checks(
        decision, f"promotion gate: {name} version {version} vs champion {decision.champion or '-'}"
    )
    if dry_run:
        verdict = "would be promoted" if decision.allowed else "would not be promoted"
        typer.echo(f"version {version} {verdict}: {decision.reason}")
        if not decision.allowed:
            raise typer.Exit(1)
        return
    if not decision.allowed:
        raise _fail(f"version {version} not promoted: {decision.reason}", code=1)
    typer.echo(f"version {version} is now champion: {decision.reason}")
    if decision.published is False:
        console.print("[bold red]warning:[/] the model event was not published (Kafka); the promotion stands")


@model_app.command("rollback")
def rollback_model(
    reason: Annotated[str | None, typer.Option(help="why, recorded on the model event")] = None,
) -> None:
    """Move champion back to the previous champion version, in one step and without the gate.

    Serving (API, stream worker, backfill) follows within its poll interval. Run it again
    to go one more version back. Exit status 1 when there is nothing to roll back to.
    """
    from model_export.registry import RegistryError, rollback

    settings = _settings()
    try:
        result = rollback(settings, reason=reason)
    except RegistryError as exc:
        raise _fail(str(exc), code=1) from None
    except Exception as exc:
        if type(exc).__name__ in {"MlflowException", "ConnectionError", "RestException"}:
            raise _registry_failure(settings, exc) from None
        raise
    typer.echo(
        f"{result.model}: champion rolled back from version {result.previous_version} to {result.version}"
    )
    if not result.published:
        console.print("[bold red]warning:[/] the model event was not published (Kafka); the rollback stands")


@model_app.command("events")
def model_events(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="how many, newest first")] = 20,
) -> None:
    """The newest registry moves (registered, promoted, rolled back) from the model.events topic."""
    from model_export.registry import EventsUnavailable, recent_model_events

    settings = _settings()
    try:
        events = recent_model_events(settings, limit)
    except EventsUnavailable as exc:
        raise _fail(str(exc), code=1) from None
    if not events:
        typer.echo("no model events yet")
        return
    table = Table(title=f"model events (newest first, {len(events)})")
    for column in ("time (UTC)", "model", "action", "alias", "version", "previous", "actor", "reasons"):
        table.add_column(column)
    for e in events:
        table.add_row(
            f"{e.event_time:%Y-%m-%d %H:%M:%S}",
            e.model,
            e.action,
            e.alias or "",
            e.version,
            e.previous_version or "",
            e.actor,
            "\n".join(e.reasons),
        )
    Console(soft_wrap=True).print(table)


@model_app.command("ensure-default")
def ensure_default() -> None:
    """Train and register the default model as champion, unless the registry has a champion.

    What ``cryptopulse up`` does before the pipeline starts, as a command for the Docker
    stack's one-shot ``model-init`` service. Training needs the ``train`` extra (torch).
    """
    from mlflow.exceptions import MlflowException

    from model_export.registry import ensure_default_model

    settings = _settings()
    try:
        version = ensure_default_model(settings, progress=False)
    except ModuleNotFoundError as exc:
        raise _fail(
            f"training the default model needs the `train` extra ({exc.name} is missing): "
            "pip install -e '.[train]', or build the image with --build-arg INSTALL_TRAIN=1",
            code=1,
        ) from None
    except MlflowException as exc:
        where = mask_url_credentials(settings.mlflow.uri)
        raise _fail(f"MLflow at {where}: {mask_url_credentials(str(exc))}", code=1) from None
    typer.echo(f"{settings.mlflow.registered_model}: champion is version {version}")


@model_app.command("bundle")
def bundle_model(
    from_artifact: Annotated[
        Path | None,
        typer.Option(help="bundle this trained artifact directory instead of training one now"),
    ] = None,
    dest: Annotated[
        Path | None, typer.Option(help="bundle directory (default: models/default in the checkout)")
    ] = None,
    profile: Annotated[
        TrainProfile,
        typer.Option(
            help="distill (the shipped model): trains the teacher first when none has finished "
            "(1 to 3 hours on 2 cores, resumable); default: the plain ensemble "
            "(about 25 minutes, twice that with the refit)"
        ),
    ] = TrainProfile.distill,
    refit: Annotated[
        bool, typer.Option("--refit/--no-refit", help="release refit on train + validation after selection")
    ] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Reproduce the bundled default model from the shipped data (no feedback, nothing registered):
    teacher, distilled student, member and combiner selection, refit on train + validation; check it
    (data formats only, at most 40 MiB, manifest) and write it to models/default, which a fresh
    `cryptopulse up` registers instead of training."""
    from model_export.bundle import BUNDLE_ROOT, BundleError, write_bundle

    settings = _settings()
    artifact = from_artifact
    if profile is TrainProfile.teacher:
        raise _fail("the teacher is not served: bundle --profile distill (or default)")
    if artifact is None:
        from model_export.train import TrainConfig
        from model_export.train import train as run_training

        work = settings.cache_dir / "training" / "bundle"
        overrides: dict[str, Any] = {"model_version": "cryptopulse-sentiment/bundled", "refit": refit}
        if profile is TrainProfile.distill:
            from model_export.distill import TeacherNotFoundError, find_teacher

            try:
                find_teacher(settings.cache_dir)
            except TeacherNotFoundError:
                typer.echo("no finished teacher: training it first (resumes where a stopped run left off)")
                _train_teacher(settings, {}, None, track=False, out=None, progress=progress)
            overrides.update(_distilled_students(settings, overrides, None, work, progress))
        config = TrainConfig.from_settings(settings, work, **overrides)
        artifact = run_training(config, progress=progress).artifact_dir
        command = f"cryptopulse model bundle --profile {profile.value} --{'' if refit else 'no-'}refit"
    else:
        command = f"cryptopulse model bundle --from-artifact {artifact.name}"
    try:
        written = write_bundle(artifact, dest or BUNDLE_ROOT, command=command)
    except BundleError as exc:
        raise _fail(str(exc), code=1) from None
    provenance = written.provenance()
    f1 = provenance["metrics"].get("test_weighted_f1")
    typer.echo(
        f"bundled {provenance['bytes'] / 2**20:.1f} MiB into {written.root}"
        + (f" (test weighted F1 {f1:.4f})" if f1 is not None else "")
    )


def register(app: typer.Typer) -> None:
    """Add ``train``, ``score`` and the ``model`` group to the main CLI."""
    app.command("train")(train)
    app.command("score")(score)
    from model_export.reference import reference_command

    model_app.command("reference")(reference_command)
    app.add_typer(model_app, name="model")


# A standalone app, handy for tests and ``python -m model_export.cli``.
app = typer.Typer(name="cryptopulse-model", no_args_is_help=True, add_completion=False)
register(app)

if __name__ == "__main__":
    app()
