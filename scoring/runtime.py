"""The one serving runtime for the sentiment ensemble (stream processors, API, Spark UDF).

It loads an artifact directory written by ``cryptopulse train`` (or a ``models:/`` URI,
downloaded once from MLflow into the cache) and needs only onnxruntime, tokenizers,
numpy, scikit-learn and vaderSentiment: never torch, so workers stay small and fast.

Artifact layout: ``model.onnx`` (int8 transformer), ``tokenizer.json``, ``linear.json`` and
``linear.npz`` (TF-IDF + logistic regression stored as data, :mod:`scoring.linear`),
``lexicon.json``, ``combiner.json``, ``label_map.json``, ``coins.json``, ``metadata.json`` and
``manifest.json`` (size and sha256 of every other file, checked before any of them is parsed:
:mod:`scoring.manifest`). No file is in a format that runs code when loaded: no pickle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from scoring.coins import CoinCatalog
from scoring.drift import ReferenceDistribution
from scoring.ensemble import MEMBER_FEATURES, Combiner, combiner_features, softmax
from scoring.labels import LABELS, VERDICT_FIELDS, Label
from scoring.lexicon import CryptoLexicon
from scoring.linear import LINEAR_FILES, ServedLinear, load_linear
from scoring.manifest import MANIFEST_NAME, verify_manifest
from scoring.registry_uri import ModelLoadError, local_model_dir

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)

MODEL_FILES = (
    "model.onnx",
    "tokenizer.json",
    *LINEAR_FILES,
    "lexicon.json",
    "combiner.json",
    "label_map.json",
    "coins.json",
    "metadata.json",
)
"""The files the runtime reads; the manifest must list every one of them."""
ARTIFACT_FILES = (*MODEL_FILES, MANIFEST_NAME)
"""A complete artifact: the model files plus their manifest (written last by the export)."""


class TextScore(BaseModel):
    """Sentiment of one text. ``label`` is None and ``error`` says why when the text was rejected."""

    model_config = ConfigDict(frozen=True)

    label: Label | None
    score: float | None = Field(default=None, ge=-1.0, le=1.0, description="p_positive - p_negative")
    confidence: float | None = Field(default=None, ge=0.0, le=1.0, description="calibrated top probability")
    p_negative: float | None = None
    p_neutral: float | None = None
    p_positive: float | None = None
    coins: tuple[str, ...] = ()
    model_version: str
    error: str | None = None
    member_disagreement: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="total variation distance between the transformer's and the linear member's "
        "probabilities (0: identical, 1: disjoint); a review-queue signal, not a verdict field",
    )
    members_agree: bool | None = Field(
        default=None, description="whether the transformer and the linear member pick the same label"
    )

    def verdict(self) -> dict[str, Any]:
        """The ``VERDICT_FIELDS`` of this text; all None when it was rejected (see ``error``)."""
        if self.label is None:
            return dict.fromkeys(VERDICT_FIELDS)
        return {name: getattr(self, name) for name in VERDICT_FIELDS}


SERVING_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
"""Graph fusions ONNX Runtime must not apply when it serves the transformer.

Fused, each residual add + layer norm becomes one ``SkipLayerNormalization`` whose CPU kernel
computes the mean and variance one element at a time (a scalar division per element); left
as ``Add`` + ``LayerNormalization`` the same step runs vectorised. Measured on a 2-core AMD
EPYC with the int8 MiniLM and 18-token posts, one thread: 13 % less time per text in batches
of 14, 6 % in batches of 64, 10 % one text at a time (docs/benchmarks.md, 2026-12-04).
"""


def inference_session(onnx_path: Path, threads: int, *, optimized_graph: Path | None = None) -> Any:
    """The ONNX Runtime session every scorer and the export's own verification use.

    ``optimized_graph``: also write the graph as ONNX Runtime optimized it (what it runs),
    to inspect which operators a change leaves or fuses.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_graph is not None:
        options.optimized_model_filepath = str(optimized_graph)
    return ort.InferenceSession(
        str(onnx_path),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(SERVING_DISABLED_OPTIMIZERS),
    )


class SentimentRuntime:
    """Scores texts with the full ensemble; thread-safe for concurrent ``score`` calls."""

    def __init__(
        self,
        path: Path,
        *,
        model_version: str | None = None,
        threads: int = 1,
        batch_size: int = 32,
        max_text_chars: int = 1000,
        onnx_file: Path | None = None,
        max_batch_tokens: int = 256,
    ) -> None:
        from tokenizers import Tokenizer

        # First, before any file is parsed: each one must be exactly what the export wrote.
        # (``onnx_file`` is the caller's own file, e.g. the fp32 export in tests: not verified.)
        verify_manifest(path, MODEL_FILES)
        self.path = path
        self.metadata: dict[str, Any] = json.loads((path / "metadata.json").read_text("utf-8"))
        labels = json.loads((path / "label_map.json").read_text("utf-8"))["labels"]
        if tuple(labels) != LABELS:
            raise ModelLoadError(f"{path}: label order {labels} differs from {LABELS}")
        self.model_version = model_version or str(self.metadata.get("model_version", "local"))
        self.max_length = int(self.metadata["max_length"])
        self.batch_size = batch_size
        self.max_batch_tokens = max(max_batch_tokens, self.max_length)
        self.max_text_chars = max_text_chars
        self._session = inference_session(onnx_file or path / "model.onnx", threads)
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_length)
        self._pad_id = int(self.metadata.get("pad_id", 0))
        self._linear = ServedLinear(load_linear(path))
        self._lexicon = CryptoLexicon.load(path / "lexicon.json")
        self._combiner = Combiner.load(path / "combiner.json")
        self.coins = CoinCatalog.load(path / "coins.json")
        raw_reference = self.metadata.get("reference")
        self.reference = ReferenceDistribution.from_dict(raw_reference) if raw_reference else None
        log.info("loaded sentiment model %s from %s (threads=%d)", self.model_version, path, threads)

    @classmethod
    def load(
        cls,
        path_or_models_uri: str | Path,
        settings: Settings | None = None,
        *,
        onnx_file: Path | None = None,
        threads: int | None = None,
    ) -> SentimentRuntime:
        """Load from a local artifact directory or a ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` URI."""
        if settings is None:
            from core.settings import get_settings

            settings = get_settings()
        path, version = local_model_dir(str(path_or_models_uri), settings)
        return cls(
            path,
            model_version=version,
            threads=threads or settings.model.intra_op_threads,
            batch_size=settings.model.batch_size,
            max_text_chars=settings.model.max_text_chars,
            onnx_file=onnx_file,
        )

    # -- members -------------------------------------------------------------------------

    def _batches(self, lengths: list[int]) -> Iterator[list[int]]:
        """Length-sorted batches of at most ``batch_size`` rows and ``max_batch_tokens`` padded tokens.

        Measured on 2 cores: int8 MiniLM runs about 2x more texts/s in small, tightly padded
        batches (~256 tokens) than in one 32-row batch padded to its longest text.
        """
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        batch: list[int] = []
        width = 0
        for i in order:
            new_width = max(width, lengths[i])
            if batch and (
                len(batch) >= self.batch_size or (len(batch) + 1) * new_width > self.max_batch_tokens
            ):
                yield batch
                batch, new_width = [], lengths[i]
            batch.append(i)
            width = new_width
        if batch:
            yield batch

    def transformer_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Transformer probabilities; batches are length-sorted and padded per batch."""
        out = np.zeros((len(texts), len(LABELS)), dtype=np.float64)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        for idx in self._batches([len(e.ids) for e in encodings]):
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.full((len(idx), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            logits = self._session.run(
                ["logits"], {k: v for k, v in feeds.items() if k in self._input_names}
            )[0]
            out[idx] = softmax(np.asarray(logits, dtype=np.float64))
        return out

    def linear_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._linear.predict_proba(list(texts)), dtype=np.float64)

    def lexicon_features(self, texts: Sequence[str]) -> np.ndarray:
        return self._lexicon.features(list(texts))

    def ensemble_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated ensemble probabilities, columns in ``LABELS`` order (no input validation)."""
        return self._ensemble_and_members(texts)[0]

    def _ensemble_and_members(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ensemble, transformer, linear) probabilities from one pass over the members, so
        serving reports how far the members disagree at no extra inference cost."""
        if not texts:
            empty = np.zeros((0, len(LABELS)))
            return empty, empty, empty
        p_transformer, p_linear = self.transformer_proba(texts), self.linear_proba(texts)
        # A member the combiner dropped has zero weights: its features cannot move the result,
        # so the lexicon is not run (the linear member still is: serving reports how far it
        # disagrees with the transformer).
        if "lexicon" in self._combiner.dropped:
            lexicon = np.zeros((len(texts), len(MEMBER_FEATURES["lexicon"])))
        else:
            lexicon = self.lexicon_features(texts)
        feats = combiner_features(p_transformer, p_linear, lexicon)
        return self._combiner.predict_proba(feats), p_transformer, p_linear

    # -- public API ----------------------------------------------------------------------

    def validate(self, text: object) -> str | None:
        """Why ``text`` cannot be scored, or None when it can."""
        if not isinstance(text, str):
            return f"not text: {type(text).__name__}"
        if not text.strip():
            return "empty text"
        if len(text) > self.max_text_chars:
            return f"text longer than {self.max_text_chars} characters ({len(text)})"
        return None

    def score(self, texts: Sequence[object]) -> list[TextScore]:
        """One ``TextScore`` per input, in order; invalid inputs get ``error`` instead of raising."""
        errors = [self.validate(t) for t in texts]
        valid = [i for i, e in enumerate(errors) if e is None]
        proba, p_transformer, p_linear = self._ensemble_and_members([str(texts[i]) for i in valid])
        # total variation distance: half the L1 distance between the two members' vectors
        distance = np.clip(0.5 * np.abs(p_transformer - p_linear).sum(axis=1), 0.0, 1.0)
        agree = np.argmax(p_transformer, axis=1) == np.argmax(p_linear, axis=1)
        results: list[TextScore | None] = [
            None if err is None else TextScore(label=None, model_version=self.model_version, error=err)
            for err in errors
        ]
        for row, i in enumerate(valid):
            p = proba[row]
            top = int(np.argmax(p))
            results[i] = TextScore(
                label=LABELS[top],
                score=float(np.clip(p[2] - p[0], -1.0, 1.0)),
                confidence=float(p[top]),
                p_negative=float(p[0]),
                p_neutral=float(p[1]),
                p_positive=float(p[2]),
                coins=tuple(self.coins.tag(str(texts[i]))),
                model_version=self.model_version,
                member_disagreement=float(distance[row]),
                members_agree=bool(agree[row]),
            )
        return cast(list[TextScore], results)  # every index is an error or a valid text: all set

    def tag_coins(self, text: str) -> list[str]:
        """Canonical coin ids mentioned in ``text`` (the artifact's catalog)."""
        return self.coins.tag(text)

    def explain(self, text: str, k: int = 5) -> list[tuple[str, float]]:
        """Top word n-grams pushing the linear member towards the ensemble's label (why this label)."""
        if self.validate(text) is not None:
            return []
        label = int(np.argmax(self.ensemble_proba([text])[0]))
        steps = self._linear.pipeline.named_steps
        union, clf = steps["features"], steps["clf"]
        word = dict(union.transformer_list)["word"]
        x = word.transform([text]).tocoo()
        n_word = len(word.vocabulary_)
        coef = clf.coef_[:, :n_word]
        direction = coef[label] - coef.mean(axis=0)
        names = word.get_feature_names_out()
        contrib = sorted(
            ((str(names[j]), float(v * direction[j])) for j, v in zip(x.col, x.data, strict=True)),
            key=lambda t: -t[1],
        )
        return [c for c in contrib if c[1] > 0][:k]
