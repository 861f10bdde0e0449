"""Tiny real run: train a few steps -> export -> int8 ONNX -> runtime -> agrees with torch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_export.combiner import WEIGHTINGS
from model_export.train import TrainResult
from model_export.transformer import torch_probabilities
from scoring.manifest import MANIFEST_NAME, runs_code_when_loaded, verify_manifest
from scoring.runtime import ARTIFACT_FILES, MODEL_FILES, SentimentRuntime

pytestmark = [pytest.mark.unit, pytest.mark.slow]

SAMPLE = [
    "Bitcoin surges to a new all-time high as ETF inflows grow",
    "Exchange hacked, users lose millions in a rug pull",
    "The company will publish its quarterly report on Tuesday",
    "$ETH looking bullish 🚀",
    "Operating profit fell to EUR 1.2 mn from EUR 3.4 mn",
]


def test_artifact_is_complete(tiny: TrainResult) -> None:
    for name in ARTIFACT_FILES:
        assert (tiny.artifact_dir / name).is_file(), name
    meta = json.loads((tiny.artifact_dir / "metadata.json").read_text())
    assert meta["labels"] == ["negative", "neutral", "positive"]
    assert meta["max_length"] == 32
    assert "test_weighted_f1" in meta["metrics"]
    reference = meta["reference"]  # the drift monitor's baseline: predictions on the test split
    assert reference["split"] == "test" and reference["n"] > 0
    assert sum(reference["label_shares"]) == pytest.approx(1.0, abs=1e-5)
    assert sum(reference["confidence_shares"]) == pytest.approx(1.0, abs=1e-5)
    runtime = SentimentRuntime(tiny.artifact_dir)
    assert runtime.reference is not None and runtime.reference.n == reference["n"]


def test_manifest_covers_every_file_and_none_runs_code(tiny: TrainResult) -> None:
    files = sorted(p.name for p in tiny.artifact_dir.iterdir())
    assert files == sorted(ARTIFACT_FILES)
    assert not [name for name in files if runs_code_when_loaded(tiny.artifact_dir / name)]
    manifest = json.loads((tiny.artifact_dir / MANIFEST_NAME).read_text("utf-8"))
    assert sorted(manifest["files"]) == sorted(MODEL_FILES)
    verify_manifest(tiny.artifact_dir, MODEL_FILES)  # written last: nothing changed after it


def test_export_was_verified_against_torch(tiny: TrainResult) -> None:
    assert tiny.metrics["verify_fp32_max_abs_diff"] < 1e-3
    assert tiny.metrics["verify_int8_mean_abs_diff"] < 0.05


def test_runtime_transformer_agrees_with_torch(tiny: TrainResult) -> None:
    runtime = SentimentRuntime(tiny.artifact_dir, threads=1, batch_size=2)
    onnx_int8 = runtime.transformer_proba(SAMPLE)
    reference = torch_probabilities(tiny.artifact_dir.parent / "hf", SAMPLE, max_length=32)
    assert np.abs(onnx_int8 - reference).max() < 0.1
    fp32 = SentimentRuntime(tiny.artifact_dir, threads=1, onnx_file=tiny.fp32_onnx).transformer_proba(SAMPLE)
    assert np.abs(fp32 - reference).max() < 1e-3


def test_metrics_cover_the_model_card(tiny: TrainResult) -> None:
    m = tiny.metrics
    for key in (
        "test_accuracy",
        "test_weighted_f1",
        "test_macro_f1",
        "test_log_loss",
        "test_ece",
        "test_precision_negative",
        "test_recall_neutral",
        "test_f1_positive",
        "test_baseline_majority_weighted_f1",
        "test_baseline_vader_weighted_f1",
        "test_baseline_tfidf_lr_weighted_f1",
        "financial_phrasebank_ensemble_weighted_f1",
        "cryptolin_ensemble_weighted_f1",
        "tweeteval_ensemble_weighted_f1",
        "latency_p50_ms",
        "latency_p95_ms",
        "throughput_texts_per_s",
    ):
        assert key in m, key
    assert 0.0 <= m["test_ece"] <= 1.0
    assert all(p.suffix == ".png" and p.is_file() for p in tiny.images)


def test_fine_tuning_is_reproducible(tmp_path) -> None:
    from model_export.transformer import FineTuneConfig, fine_tune

    texts = SAMPLE * 4
    labels = [2, 0, 1, 2, 0] * 4
    config = FineTuneConfig(max_length=16, batch_size=8, max_steps=2, seed=5)
    a = fine_tune(texts, labels, tmp_path / "a", config, progress=False)
    b = fine_tune(texts, labels, tmp_path / "b", config, progress=False)
    pa = torch_probabilities(a, SAMPLE, max_length=16)
    pb = torch_probabilities(b, SAMPLE, max_length=16)
    assert np.abs(pa - pb).max() < 1e-6


def test_release_refit_keeps_the_selected_combiner_and_the_figures_from_before(tmp_path) -> None:
    from model_export.train import train
    from tests.model_export.tiny import tiny_config

    result = train(tiny_config(tmp_path / "refit", refit=True, measure_latency=False), progress=False)
    meta = json.loads((result.artifact_dir / "metadata.json").read_text())
    assert meta["refit"]["splits"] == ["train", "validation"]
    assert meta["combiner_members"][0] == "transformer"
    assert meta["combiner_weighting"] in WEIGHTINGS
    # figures from before the refit are kept and named as such, beside the refit model's own
    assert "before_refit_test_weighted_f1" in result.metrics and "test_weighted_f1" in result.metrics
    assert "before_refit" in result.report and "combiner_selection" in result.report
    # the selection's members lived in their own artifact; the released one is refit and complete
    selection = tmp_path / "refit" / "selection" / "artifact"
    assert (selection / "model.onnx").read_bytes() != (result.artifact_dir / "model.onnx").read_bytes()
    combined = json.loads((result.artifact_dir / "combiner.json").read_text())
    assert combined["dropped_members"] == meta["combiner_dropped"]
    verify_manifest(result.artifact_dir, MODEL_FILES)
    SentimentRuntime(result.artifact_dir, threads=1).score(SAMPLE)


def test_a_refit_of_a_given_transformer_needs_its_refit_twin(tmp_path) -> None:
    from model_export.train import train
    from tests.model_export.tiny import tiny_config

    config = tiny_config(tmp_path / "run", refit=True, transformer_dir=tmp_path / "student")
    with pytest.raises(ValueError, match="refit_transformer_dir"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_config_names_working_directories_without_machine_paths(tmp_path) -> None:
    from tests.model_export.tiny import tiny_config

    config = tiny_config(tmp_path / "run", transformer_dir=tmp_path / "a" / "bundle-student")
    params = config.params()
    assert params["transformer_dir"] == "bundle-student"
    assert str(tmp_path) not in json.dumps(params)
