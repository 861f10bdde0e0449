"""After a training run: find the version it registered, evaluate it on the newest feedback,
and hand it to auto-promotion.

``cryptopulse train`` already evaluates on the fixed test splits and logs those metrics to
its MLflow run. This adds the half only the learning loop has: accuracy and F1 of the new
version on the newest feedback snapshot (people's labels of live posts), logged to the same
run as ``feedback_*`` metrics and copied to the version's tags, where the promotion gate
reads its evidence. It runs as its own child process (``cryptopulse retrain evaluate``), so
MLflow and the ONNX runtime are never loaded into the long-running scheduler.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from core.settings import Settings

log = structlog.get_logger(__name__)

RESULT_PREFIX = "retrain-result "
"""The line ``retrain evaluate`` prints its JSON result on (the service reads it from the log)."""


def feedback_metrics(truth: Sequence[str], predicted: Sequence[str | None]) -> dict[str, float]:
    """Accuracy, weighted and macro F1 of ``predicted`` against people's labels.

    A text the model refused (``None``) counts as wrong, not as missing: a model that rejects
    real posts is worse on them.
    """
    from sklearn.metrics import accuracy_score, f1_score

    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} labels but {len(predicted)} predictions")
    if not truth:
        return {}
    guesses = [p if p is not None else "__refused__" for p in predicted]
    labels = sorted(set(truth))
    return {
        "feedback_accuracy": float(accuracy_score(truth, guesses)),
        "feedback_weighted_f1": float(
            f1_score(truth, guesses, labels=labels, average="weighted", zero_division=0)
        ),
        "feedback_macro_f1": float(f1_score(truth, guesses, labels=labels, average="macro", zero_division=0)),
        "feedback_count": float(len(truth)),
    }


def labelled_texts(examples: Any) -> tuple[list[str], list[str]]:
    """(texts, labels) of a feedback snapshot's examples: a DataFrame with ``text`` and
    ``label`` columns, or records with those fields (objects, mappings or pairs)."""
    if hasattr(examples, "columns") and {"text", "label"} <= set(examples.columns):
        return [str(t) for t in examples["text"]], [str(lab) for lab in examples["label"]]
    texts: list[str] = []
    labels: list[str] = []
    for example in examples if isinstance(examples, Iterable) else ():
        if isinstance(example, Mapping):
            text, label = example["text"], example["label"]
        elif isinstance(example, tuple) and len(example) == 2:
            text, label = example
        else:
            text, label = example.text, example.label
        texts.append(str(text))
        labels.append(str(getattr(label, "value", label)))
    return texts, labels


def versions_since(settings: Settings, since: datetime) -> list[str]:
    """Versions of the registered model created at or after ``since``, newest first."""
    from mlflow.exceptions import MlflowException

    from scoring.registry_uri import mlflow_client

    client = mlflow_client(settings)
    name = settings.mlflow.registered_model
    try:
        found = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return []
    after_ms = int(since.timestamp() * 1000)
    fresh = [mv for mv in found if int(mv.creation_timestamp or 0) >= after_ms]
    return [str(mv.version) for mv in sorted(fresh, key=lambda mv: -int(mv.version))]


def evaluate_on_feedback(settings: Settings, version: str) -> dict[str, float] | None:
    """Score the newest feedback snapshot with ``version``; log the metrics to its run and
    tags. None (and a log line saying why) when there is no feedback module or no feedback."""
    try:
        feedback = importlib.import_module("model_export.feedback")
    except ImportError:
        log.warning("feedback evaluation skipped: model_export.feedback is not available")
        return None
    dataset = feedback.snapshot_feedback(settings)
    texts, truth = labelled_texts(dataset.examples)
    if not texts:
        log.info("feedback evaluation skipped: no feedback labels yet", version=version)
        return None
    from scoring.holder import load_runtime
    from scoring.registry_uri import mlflow_client

    name = settings.mlflow.registered_model
    runtime = load_runtime(f"models:/{name}/{version}", settings)
    predicted = [score.label for score in runtime.score(texts)]
    metrics = feedback_metrics(truth, [str(p) if p is not None else None for p in predicted])
    client = mlflow_client(settings)
    mv = client.get_model_version(name, version)
    if mv.run_id:
        for key, value in metrics.items():
            client.log_metric(mv.run_id, key, value)
        client.set_tag(mv.run_id, "feedback_content_hash", str(getattr(dataset, "content_hash", "")))
    for key, value in metrics.items():
        client.set_model_version_tag(name, version, key, f"{value:.6f}")
    log.info("evaluated on feedback", version=version, **metrics)
    return metrics


def auto_promote(settings: Settings, version: str) -> str | None:
    """``model_export.registry.maybe_auto_promote(settings, version)`` when it exists (it
    decides, from ``learning.auto_promote`` and the gate, whether to promote); its answer
    as text, or None when the function is not there."""
    registry = importlib.import_module("model_export.registry")
    promote = getattr(registry, "maybe_auto_promote", None)
    if promote is None:
        log.info("auto-promotion not available in model_export.registry", version=version)
        return None
    decision = promote(settings, version)
    allowed, reason = getattr(decision, "allowed", None), getattr(decision, "reason", None)
    if allowed is None:
        return str(decision)
    return f"gate {'passed' if allowed else 'refused'}: {reason}"


def finish_run(settings: Settings, since: datetime) -> dict[str, Any]:
    """What ``retrain evaluate`` does after the training steps: the newest version registered
    since ``since``, its feedback metrics, and the auto-promotion answer."""
    versions = versions_since(settings, since)
    if not versions:
        return {"version": None, "feedback": None, "promotion": None}
    version = versions[0]
    return {
        "version": version,
        "feedback": evaluate_on_feedback(settings, version),
        "promotion": auto_promote(settings, version),
    }
