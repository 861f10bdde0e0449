"""The feedback dataset: a snapshot of the compacted topic (real Kafka), its hash, and how
it joins training (train split only, weighted) and is recorded on the MLflow run."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.kafka import EventProducer
from core.settings import Settings, load_settings
from model_export import data as datamod
from model_export.feedback import (
    EMPTY_SHA256,
    FeedbackError,
    load_dataset,
    snapshot_feedback,
    write_dataset,
)
from model_export.train import TrainConfig, log_feedback_to_mlflow, transformer_training_set
from schemas.events import Feedback, SentimentLabel, Source
from schemas.topics import FEEDBACK
from scoring.labels import LABEL_TO_ID
from tests.ports import free_port

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def fb(source_id: str, label: str, *, minute: int = 0, text: str | None = None) -> Feedback:
    return Feedback(
        source_id=source_id,
        event_time=T0 + timedelta(minutes=minute),
        ingest_time=T0 + timedelta(minutes=minute),
        label=SentimentLabel(label),
        text=text or f"post {source_id} about bitcoin",
        annotator="k1",
        model_label=SentimentLabel.NEUTRAL,
        model_version="m/1",
        coins=["bitcoin"],
        source=Source.REDDIT,
    )


@pytest.fixture
def settings(isolated_settings: Settings, tmp_path: Path) -> Settings:
    return isolated_settings.model_copy(update={"cache_dir": tmp_path})


@pytest.mark.integration
def test_snapshot_keeps_the_last_answer_per_post_and_is_versioned(settings: Settings) -> None:
    topic = FEEDBACK.name(settings)
    with EventProducer(settings, component="feedback-test") as producer:
        producer.send(topic, fb("t3_a", "positive", minute=0))
        producer.send(topic, fb("t3_b", "negative", minute=1))
        producer.send(topic, fb("t3_a", "negative", minute=2))  # a changed mind: this one wins
        producer.send_raw(topic, b'{"not": "feedback"}', key="t3_c")
        producer.flush()

    dataset = snapshot_feedback(settings)

    assert dataset.count == 2
    assert dataset.skipped == 1
    assert [(f.source_id, f.label.value) for f in dataset.examples] == [
        ("t3_a", "negative"),
        ("t3_b", "negative"),
    ]
    assert dataset.path == settings.cache_dir / "feedback" / f"{dataset.content_hash}.jsonl"
    payload = dataset.path.read_bytes()
    assert hashlib.sha256(payload).hexdigest() == dataset.content_hash
    lines = [json.loads(line) for line in payload.splitlines()]
    assert [line["source_id"] for line in lines] == ["t3_a", "t3_b"]

    # Same answers, same bytes, same version; the file reads back to the same examples.
    again = snapshot_feedback(settings)
    assert again.content_hash == dataset.content_hash
    assert load_dataset(dataset.path, dataset.content_hash).examples == dataset.examples

    # A new answer is a new version.
    with EventProducer(settings, component="feedback-test") as producer:
        producer.send(topic, fb("t3_b", "positive", minute=3))
        producer.flush()
    newer = snapshot_feedback(settings)
    assert newer.content_hash != dataset.content_hash
    assert {f.source_id: f.label.value for f in newer.examples} == {"t3_a": "negative", "t3_b": "positive"}


@pytest.mark.integration
def test_snapshot_of_an_empty_topic_is_the_empty_dataset(settings: Settings) -> None:
    dataset = snapshot_feedback(settings)
    assert (dataset.count, dataset.content_hash, dataset.examples) == (0, EMPTY_SHA256, [])
    assert dataset.path.read_bytes() == b""


@pytest.mark.integration
def test_snapshot_with_kafka_away_is_a_clear_error(tmp_path: Path) -> None:
    away = load_settings(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"}, cache_dir=tmp_path)
    with pytest.raises(FeedbackError, match="unavailable"):
        snapshot_feedback(away)


@pytest.mark.unit
def test_a_tampered_dataset_file_is_refused(tmp_path: Path) -> None:
    dataset = write_dataset([fb("t3_a", "positive")], tmp_path)
    dataset.path.write_bytes(dataset.path.read_bytes().replace(b"positive", b"negative"))
    with pytest.raises(FeedbackError, match="expected"):
        load_dataset(dataset.path, dataset.content_hash)


def _corpus() -> pd.DataFrame:
    rows = [
        ("bitcoin to the moon", "positive", "train"),
        ("ethereum is dead", "negative", "train"),
        ("solana release today", "neutral", "validation"),
        ("markets flat this week", "neutral", "test"),
    ]
    return pd.DataFrame(
        {
            "text": [r[0] for r in rows],
            "label": [LABEL_TO_ID[r[1]] for r in rows],
            "dataset": "cryptolin",
            "date": pd.NaT,
            "split": [r[2] for r in rows],
        }
    )


@pytest.mark.unit
def test_feedback_joins_only_the_train_split_with_its_weight() -> None:
    corpus = _corpus()
    examples = [
        fb("t3_new", "positive", text="a brand new post about BTC"),
        fb("t3_relabel", "negative", text="Bitcoin to the MOON"),  # a train text, relabelled
        fb("t3_test", "positive", text="markets flat this week"),  # a test text: never joins
        fb("t3_val", "positive", text="solana release today"),  # a validation text: never joins
    ]
    joined = datamod.join_feedback(corpus, datamod.feedback_frame(examples, weight=2.5))

    held_out = joined[joined["split"] != "train"]
    pd.testing.assert_frame_equal(
        held_out[["text", "label", "split"]].reset_index(drop=True),
        corpus[corpus["split"] != "train"][["text", "label", "split"]].reset_index(drop=True),
    )
    feedback = joined[joined["dataset"] == datamod.FEEDBACK_DATASET]
    assert sorted(feedback["text"]) == ["Bitcoin to the MOON", "a brand new post about BTC"]
    assert set(feedback["split"]) == {"train"} and set(feedback["weight"]) == {2.5}
    train = joined[joined["split"] == "train"]
    assert "bitcoin to the moon" not in set(train["text"])  # the person's label replaced it
    assert set(train.loc[train["dataset"] == "cryptolin", "weight"]) == {1.0}


@pytest.mark.unit
def test_no_feedback_leaves_the_corpus_as_it_was() -> None:
    corpus = _corpus()
    joined = datamod.join_feedback(corpus, datamod.feedback_frame([], weight=2.0))
    pd.testing.assert_frame_equal(joined.drop(columns="weight"), corpus)
    assert set(joined["weight"]) == {1.0}


@pytest.mark.unit
def test_config_records_the_dataset_and_repeats_feedback_for_the_transformer(tmp_path: Path) -> None:
    dataset = write_dataset([fb("t3_a", "positive"), fb("t3_b", "negative")], tmp_path / "fb")
    settings = load_settings(learning={"feedback_weight": 3.0})
    config = TrainConfig.from_settings(settings, tmp_path / "run", feedback=dataset)
    params = config.params()
    assert params["feedback_sha256"] == dataset.content_hash
    assert params["feedback_count"] == "2"
    assert params["feedback_weight"] == "3.0"

    plain = TrainConfig.from_settings(settings, tmp_path / "run")
    assert (plain.params()["feedback_sha256"], plain.feedback_count) == (EMPTY_SHA256, 0)

    train = datamod.join_feedback(_corpus(), datamod.feedback_frame(dataset.examples, config.feedback_weight))
    train = train[train["split"] == "train"]
    mix = transformer_training_set(train, config)
    assert int((mix["dataset"] == datamod.FEEDBACK_DATASET).sum()) == 2 * 3
    zero = TrainConfig.from_settings(
        load_settings(learning={"feedback_weight": 0.0}), tmp_path / "run", feedback=dataset
    )
    assert int((transformer_training_set(train, zero)["dataset"] == datamod.FEEDBACK_DATASET).sum()) == 0


@pytest.mark.integration
def test_the_mlflow_run_names_the_feedback_it_trained_on(tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    dataset = write_dataset([fb("t3_a", "positive")], tmp_path / "fb")
    config = TrainConfig.from_settings(load_settings(), tmp_path / "run", feedback=dataset)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment(
            "feedback-test", artifact_location=(tmp_path / "artifacts").as_uri()
        )
        with mlflow.start_run(experiment_id=experiment) as run:
            log_feedback_to_mlflow(config)
        client = MlflowClient(tracking_uri=uri)
        tags = client.get_run(run.info.run_id).data.tags
        assert tags["feedback_sha256"] == dataset.content_hash
        assert tags["feedback_count"] == "1"
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "feedback")]
        assert artifacts == [f"feedback/{dataset.path.name}"]
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.mark.integration
@pytest.mark.slow
def test_a_tiny_run_trains_on_feedback_and_names_it(tmp_path: Path) -> None:
    from model_export.train import train
    from tests.model_export.tiny import tiny_config

    examples = [fb(f"t3_f{i}", "positive", text=f"feedback post {i}: BTC to the moon") for i in range(5)]
    dataset = write_dataset(examples, tmp_path / "fb")
    config = tiny_config(
        tmp_path / "run",
        feedback_path=dataset.path,
        feedback_sha256=dataset.content_hash,
        feedback_count=dataset.count,
        feedback_weight=2.0,
        measure_latency=False,
    )
    result = train(config, progress=False)
    metadata = json.loads((result.artifact_dir / "metadata.json").read_text())
    assert metadata["feedback"] == {"sha256": dataset.content_hash, "count": 5, "weight": 2.0}
    splits = result.report["splits"]
    assert splits[str(("feedback", "train"))] == 5
    assert not [k for k in splits if "feedback" in k and "train" not in k]

    # A dataset file that changed since it was recorded is refused, not trained on.
    tampered = tiny_config(
        tmp_path / "run2", feedback_path=dataset.path, feedback_sha256="0" * 64, feedback_count=5
    )
    with pytest.raises(FeedbackError, match="expected"):
        train(tampered, progress=False)
