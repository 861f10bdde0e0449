"""A run's last step: the new version's accuracy on people's labels, logged where the gate reads it."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.kafka import EventProducer
from core.settings import Settings, load_settings
from model_export import registry
from model_export.train import TrainResult
from retraining.evaluate import feedback_metrics, finish_run, labelled_texts
from schemas.events import Feedback, SentimentLabel
from schemas.topics import FEEDBACK
from scoring.registry_uri import mlflow_client


@pytest.mark.unit
def test_feedback_metrics_count_refusals_as_wrong() -> None:
    metrics = feedback_metrics(
        ["positive", "negative", "neutral", "positive"], ["positive", "negative", None, "neutral"]
    )
    assert metrics["feedback_accuracy"] == 0.5
    assert metrics["feedback_count"] == 4
    assert 0 < metrics["feedback_macro_f1"] < 1
    assert feedback_metrics([], []) == {}
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        feedback_metrics(["positive", "neutral"], ["positive"])


@pytest.mark.unit
def test_labelled_texts_reads_records_mappings_pairs_and_frames() -> None:
    record = Feedback(
        source_id="t3_a",
        event_time=datetime.now(UTC),
        label=SentimentLabel.NEGATIVE,
        text="down bad",
        annotator="x",
    )
    assert labelled_texts([record]) == (["down bad"], ["negative"])
    assert labelled_texts([{"text": "up", "label": "positive"}, ("meh", "neutral")]) == (
        ["up", "meh"],
        ["positive", "neutral"],
    )
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["neutral", "positive"]})
    assert labelled_texts(frame) == (["a", "b"], ["neutral", "positive"])


def own_registry(base: Settings, cache_dir: Path) -> Settings:
    """``base`` with a registered model no other test writes."""
    return load_settings(
        kafka=base.kafka.model_dump(),
        redis=base.redis.model_dump(),
        mlflow={
            **base.mlflow.model_dump(),
            "tracking_uri": base.mlflow.uri,
            "registered_model": f"cp-test-{uuid.uuid4().hex[:10]}",
            "experiment": "cp-test-retraining",
        },
        cache_dir=cache_dir,
    )


def register(settings: Settings, artifact_dir: Path) -> str:
    import mlflow

    result = TrainResult(
        artifact_dir=artifact_dir,
        fp32_onnx=artifact_dir / "model.onnx",
        metrics={"test_weighted_f1": 0.7, "test_accuracy": 0.7, "test_macro_f1": 0.7, "latency_p95_ms": 5.0},
        report={"evaluation_fingerprint": "same-test-set"},
        images=[],
    )
    mlflow.set_tracking_uri(settings.mlflow.uri)
    mlflow.set_experiment(settings.mlflow.experiment)
    with mlflow.start_run() as run:
        return registry.log_and_register(result, None, settings, run.info.run_id).version  # type: ignore[arg-type]


@pytest.mark.integration
def test_finish_run_evaluates_the_new_version_on_feedback(
    isolated_settings: Settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    settings = own_registry(isolated_settings, tmp_path / "cache")
    client = mlflow_client(settings)
    try:
        register(settings, tiny_model_dir)  # the champion, from before the run
        started = datetime.now(UTC) - timedelta(seconds=1)
        assert finish_run(settings, started + timedelta(days=1))["version"] is None
        challenger = register(settings, tiny_model_dir)
        labels = {"bitcoin to the moon, huge gains": "positive", "eth crashes, total disaster": "negative"}
        labels["the fed meets on tuesday"] = "neutral"
        with EventProducer(settings, component="test") as producer:
            for i, (text, label) in enumerate(labels.items()):
                producer.send(
                    FEEDBACK.name(settings),
                    Feedback(
                        source_id=f"t3_ev{i}",
                        event_time=datetime.now(UTC),
                        label=label,
                        text=text,
                        annotator="t",
                    ),
                )

        result = finish_run(settings, started)

        assert result["version"] == challenger
        metrics = result["feedback"]
        assert metrics is not None and metrics["feedback_count"] == 3
        assert 0.0 <= metrics["feedback_accuracy"] <= 1.0
        assert result["promotion"] is None or result["promotion"].startswith("gate ")
        mv = client.get_model_version(settings.mlflow.registered_model, challenger)
        assert float(mv.tags["feedback_accuracy"]) == pytest.approx(metrics["feedback_accuracy"], abs=1e-6)
        assert mv.run_id is not None
        run = client.get_run(mv.run_id)
        assert run.data.metrics["feedback_count"] == 3
        assert registry.champion_version(settings) != challenger  # auto-promotion is off by default
    finally:
        with contextlib.suppress(Exception):
            client.delete_registered_model(settings.mlflow.registered_model)
