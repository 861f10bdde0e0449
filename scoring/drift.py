"""Drift: how far live predictions, and the live texts themselves, moved from the model's reference.

Two references. :class:`ReferenceDistribution` (below) is the model's own predictions on the
test split, stored in the artifact: the prediction-drift signals. :class:`InputReference`
(second half of the module) describes the texts of the validation split per source (length,
out-of-vocabulary rate, a bag-of-words distance, coin mix, label and confidence) and is
stored next to each registered version (``model_export.reference``): the input-drift tests.

Each trained model stores, in its artifact's ``metadata.json``, the distribution of its
own predictions on the held-out test split (``reference``): the share of each label and
the histogram of the calibrated confidence. Live predictions are compared with it by the
Population Stability Index, the usual monitoring statistic for this (design document 6.3,
"distance metrics"): PSI = sum((a - e) * ln(a / e)) over the bins. Rules of thumb: below
0.1 no shift, 0.1-0.25 a moderate one, above 0.25 a significant one.

Two signals, because they fail differently: the label mix moves when the market mood (or
the feed) changes, the confidence histogram sinks when the inputs no longer look like
anything the model was trained on (out-of-distribution text, a new slang, a broken
cleaner), which is the earliest sign that accuracy is dropping without any labels.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

CONFIDENCE_EDGES: tuple[float, ...] = tuple(float(x) for x in np.linspace(1 / 3, 1.0, 11))
"""Ten equal bins over the possible range of a 3-class top probability."""
_EPS = 1e-4


def confidence_bin(confidence: float) -> int:
    """Index of ``confidence`` in :data:`CONFIDENCE_EDGES` (values outside are clipped)."""
    index = int(np.searchsorted(CONFIDENCE_EDGES, confidence, side="right")) - 1
    return min(max(index, 0), len(CONFIDENCE_EDGES) - 2)


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population Stability Index of two distributions over the same bins (shares or counts)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("psi needs two non-empty distributions over the same bins")
    e = np.clip(e / e.sum(), _EPS, None)
    a = np.clip(a / a.sum(), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class ReferenceDistribution:
    """The model's own predictions on held-out data: label shares and confidence histogram."""

    n: int
    label_shares: tuple[float, ...]
    confidence_shares: tuple[float, ...]
    split: str = "test"

    @classmethod
    def from_probabilities(cls, proba: np.ndarray, split: str = "test") -> ReferenceDistribution:
        """From an (n, 3) array of calibrated class probabilities."""
        proba = np.asarray(proba, dtype=np.float64)
        if proba.ndim != 2 or proba.shape[0] == 0:
            raise ValueError("need a non-empty (n, classes) probability array")
        labels = np.bincount(proba.argmax(axis=1), minlength=proba.shape[1])
        bins = np.bincount(
            [confidence_bin(c) for c in proba.max(axis=1)], minlength=len(CONFIDENCE_EDGES) - 1
        )
        n = int(proba.shape[0])
        return cls(
            n=n,
            label_shares=tuple(round(float(x) / n, 6) for x in labels),
            confidence_shares=tuple(round(float(x) / n, 6) for x in bins),
            split=split,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "split": self.split,
            "label_shares": list(self.label_shares),
            "confidence_edges": [round(x, 6) for x in CONFIDENCE_EDGES],
            "confidence_shares": list(self.confidence_shares),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ReferenceDistribution:
        edges = raw.get("confidence_edges")
        if edges is not None and len(edges) != len(CONFIDENCE_EDGES):
            raise ValueError(
                f"reference has {len(edges) - 1} confidence bins, expected {len(CONFIDENCE_EDGES) - 1}"
            )
        return cls(
            n=int(raw["n"]),
            label_shares=tuple(float(x) for x in raw["label_shares"]),
            confidence_shares=tuple(float(x) for x in raw["confidence_shares"]),
            split=str(raw.get("split", "test")),
        )

    def drift(self, label_counts: Sequence[int], confidence_counts: Sequence[int]) -> dict[str, float]:
        """PSI of live label counts and confidence-bin counts against this reference."""
        return {
            "labels": round(psi(self.label_shares, label_counts), 6),
            "confidence": round(psi(self.confidence_shares, confidence_counts), 6),
        }


# ---------------------------------------------------------------------------------------------
# Input drift: per-source references of what the texts look like, PSI + KS / chi-square tests
# ---------------------------------------------------------------------------------------------
#
# The prediction signals above see drift only once it moves the model's outputs. The input
# features below see it in the texts themselves, per source, because a Reddit feed and a
# news feed differ by nature: each live source is compared with the reference of *its*
# kind of text, so a feed that is Reddit-only is judged against social posts, never flagged
# for not looking like news. Features (one value per post):
#
# * ``length``: characters of the cleaned text (continuous).
# * ``confidence``: the ensemble's top probability (continuous; finer bins than the
#   test-split reference above, taken from the reference's own quantiles).
# * ``oov``: out-of-vocabulary rate, the share of the text's word tokens (the linear
#   member's own token pattern, lower-cased) that are not unigrams of the TF-IDF member's
#   word vocabulary (words seen in at least ``min_df`` training texts). Chosen over the
#   WordPiece tokenizer's unknown rate because WordPiece almost never emits ``[UNK]``: it
#   splits new words into pieces, and a "many pieces" cut-off would be arbitrary. A text
#   without any word token counts as fully out of vocabulary (1.0).
# * ``distance``: an embedding-distance proxy, 1 - cosine between the text's signed hashed
#   bag of words (``HASH_DIM`` buckets, CRC32 of each token) and the source's reference
#   centroid. The ONNX graph exports only the logits (no pooled sentence vector), and
#   running the transformer a second time per post would double the scoring cost; hashing
#   costs microseconds, needs no model file and is stable across processes.
# * ``label`` and ``coin`` (categorical): the predicted label, and the first coin the tagger
#   returns (``none`` when untagged; one category per post keeps the chi-square valid).
#
# Tests: PSI on every feature (effect size) with the two-sample Kolmogorov-Smirnov test on
# the continuous ones and the chi-square test of homogeneity on the categorical ones
# (significance). A feature drifts only when both agree: PSI above the threshold *and*
# p-value below ``alpha``; PSI alone is noisy on small windows, a p-value alone flags any
# tiny shift on big ones. The KS test runs on the binned distributions (the reference
# stores decile histograms, the usual PSI bins, not samples), which can only understate the
# statistic: conservative.

CONTINUOUS_FEATURES: tuple[str, ...] = ("length", "confidence", "oov", "distance")
CATEGORICAL_FEATURES: tuple[str, ...] = ("label", "coin")
FEATURE_DESCRIPTIONS: dict[str, str] = {
    "length": "text length",
    "confidence": "prediction confidence",
    "oov": "out-of-vocabulary rate",
    "distance": "bag-of-words distance from the reference centroid",
    "label": "predicted label mix",
    "coin": "coin mix",
    "source_mix": "source mix",
}
REFERENCE_FORMAT = "cryptopulse-input-reference/1"
REFERENCE_TAG = "drift_reference"
"""Model-version tag naming the run artifact (path relative to the run) that holds its input reference."""
HASH_DIM = 256
REFERENCE_BINS = 10
MIN_REFERENCE_ROWS = 50
"""A source with fewer reference rows than this has no usable reference ("no reference")."""
MIN_EXPECTED = 5.0
"""Chi-square cells expecting fewer posts than this are merged into ``other``."""
NO_COIN = "none"
OTHER = "other"
REPLAY_SOURCE = "replay"
DATASET_SOURCES: dict[str, str] = {
    "tweeteval": "reddit",
    "stock_tweets": "reddit",
    "cryptolin": "news",
    "twitter_financial_news": "news",
    "financial_phrasebank": "news",
}
"""Which live source each training dataset stands for: tweets are the closest we have to social
posts, headlines and news sentences to the news feeds. ``replay`` (the bundled mix of both
kinds) is referenced by all datasets pooled."""

_TOKEN_RE = re.compile(r"(?u)[$#@]?\b\w[\w'-]*\b")  # the linear member's word token pattern


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens, as the linear member's word vectorizer extracts them."""
    return _TOKEN_RE.findall(text.lower())


def oov_rate(words: Sequence[str], vocabulary: frozenset[str] | set[str]) -> float:
    """Share of ``words`` outside ``vocabulary``; 1.0 for a text without words."""
    if not words:
        return 1.0
    return sum(1 for w in words if w not in vocabulary) / len(words)


def hashed_bag(words: Sequence[str], dim: int = HASH_DIM) -> dict[int, float]:
    """Signed hashed bag of words (sparse): bucket -> summed +-1, by CRC32 of each token."""
    bag: dict[int, float] = {}
    for word in words:
        h = zlib.crc32(word.encode("utf-8"))
        bucket = h % dim
        bag[bucket] = bag.get(bucket, 0.0) + (1.0 if (h >> 16) & 1 else -1.0)
    return bag


def bag_distance(bag: dict[int, float], unit_centroid: Sequence[float]) -> float:
    """1 - cosine between a hashed bag and a unit-length centroid; 1.0 for an empty bag."""
    norm = math.sqrt(sum(v * v for v in bag.values()))
    if norm == 0:
        return 1.0
    return 1.0 - sum(v * unit_centroid[b] for b, v in bag.items()) / norm


def _dense_unit(bag: dict[int, float], dim: int = HASH_DIM) -> np.ndarray:
    vec = np.zeros(dim)
    for bucket, value in bag.items():
        vec[bucket] = value
    norm = np.linalg.norm(vec)
    return vec / norm if norm > 0 else vec


def primary_coin(coins: Sequence[str]) -> str:
    return str(coins[0]) if coins else NO_COIN


@dataclass(frozen=True)
class Histogram:
    """Counts of a continuous feature over bins cut at ``edges`` (bin i: edges[i-1] <= v < edges[i])."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]

    @classmethod
    def from_values(cls, values: Sequence[float], bins: int = REFERENCE_BINS) -> Histogram:
        """Cut points at the reference's own quantiles (each bin holds ~1/``bins`` of it), plus
        one at its minimum and one just above its maximum: live values outside the reference's
        range land in bins the reference left empty, so a feature the reference never varied
        (an OOV rate of 0 throughout) still shows a live shift."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            raise ValueError("a histogram needs at least one value")
        low, high = float(arr.min()), float(np.nextafter(arr.max(), np.inf))
        inner = np.quantile(arr, np.linspace(0, 1, bins + 1)[1:-1])
        cut = tuple(float(e) for e in np.unique(np.concatenate([[low], inner, [high]])))
        return cls(edges=cut, counts=tuple(int(c) for c in _bin_counts(cut, arr)))

    def bin_counts(self, values: ArrayLike) -> np.ndarray:
        return _bin_counts(self.edges, np.asarray(values, dtype=np.float64))

    @property
    def n(self) -> int:
        return sum(self.counts)


def _bin_counts(edges: Sequence[float], values: np.ndarray) -> np.ndarray:
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return np.bincount(index, minlength=len(edges) + 1)


def binned_ks(expected: ArrayLike, actual: ArrayLike) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov (D, p-value) of two count vectors over the same ordered bins.

    D is the largest gap between the two empirical CDFs at the bin edges (a lower bound of
    the unbinned D); the p-value is the asymptotic Kolmogorov distribution at
    D * (sqrt(m) + 0.12 + 0.11 / sqrt(m)), m = n1 n2 / (n1 + n2) (Stephens' correction).
    """
    from scipy.stats import kstwobign

    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    n1, n2 = e.sum(), a.sum()
    if e.shape != a.shape or n1 <= 0 or n2 <= 0:
        raise ValueError("binned_ks needs two non-empty count vectors over the same bins")
    d = float(np.max(np.abs(np.cumsum(e) / n1 - np.cumsum(a) / n2)))
    m = math.sqrt(n1 * n2 / (n1 + n2))
    p = float(kstwobign.sf(d * (m + 0.12 + 0.11 / m)))
    return d, min(max(p, 0.0), 1.0)


def chi_square(expected: dict[str, int], actual: dict[str, int]) -> tuple[float, float, int]:
    """Chi-square test of homogeneity (statistic, p-value, degrees of freedom) of two count maps.

    Categories missing from the reference count as ``other``; the rarest cells are merged
    into ``other`` until every cell expects at least :data:`MIN_EXPECTED` posts (the
    chi-square approximation's rule). Fewer than two cells left: nothing to test (0, 1, 0).
    """
    from scipy.stats import chi2_contingency

    ref: dict[str, int] = dict(expected)
    live: dict[str, int] = {}
    for key, value in actual.items():
        live[key if key in ref else OTHER] = live.get(key if key in ref else OTHER, 0) + value
    keys = sorted(set(ref) | set(live), key=lambda k: ref.get(k, 0) + live.get(k, 0))
    table = {k: [ref.get(k, 0), live.get(k, 0)] for k in keys if ref.get(k, 0) + live.get(k, 0) > 0}
    n1, n2 = sum(r for r, _ in table.values()), sum(a for _, a in table.values())
    if n1 == 0 or n2 == 0:
        raise ValueError("chi_square needs two non-empty count maps")
    total = n1 + n2
    while len(table) > 2:
        smallest = min(table, key=lambda k: sum(table[k]))
        if min(sum(table[smallest]) * n1 / total, sum(table[smallest]) * n2 / total) >= MIN_EXPECTED:
            break
        merged = table.pop(smallest)
        into = OTHER if smallest != OTHER and OTHER in table else min(table, key=lambda k: sum(table[k]))
        table[into] = [table[into][0] + merged[0], table[into][1] + merged[1]]
    if len(table) < 2:
        return 0.0, 1.0, 0
    result = chi2_contingency(np.asarray(list(table.values()), dtype=np.float64).T, correction=False)
    return float(result.statistic), float(result.pvalue), int(result.dof)


@dataclass(frozen=True)
class SourceReference:
    """One source's reference: histograms of the continuous features, counts of the categorical
    ones, and the unit-length centroid of its hashed bags of words."""

    source: str
    n: int
    continuous: dict[str, Histogram]
    categorical: dict[str, dict[str, int]]
    centroid: tuple[float, ...]
    datasets: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "datasets": list(self.datasets),
            "continuous": {
                k: {"edges": list(h.edges), "counts": list(h.counts)} for k, h in self.continuous.items()
            },
            "categorical": {k: dict(v) for k, v in self.categorical.items()},
            "centroid": [round(x, 6) for x in self.centroid],
        }

    @classmethod
    def from_dict(cls, source: str, raw: dict[str, Any]) -> SourceReference:
        centroid = tuple(float(x) for x in raw["centroid"])
        if len(centroid) != HASH_DIM:
            raise ValueError(f"reference centroid of {source} has {len(centroid)} buckets, not {HASH_DIM}")
        return cls(
            source=source,
            n=int(raw["n"]),
            continuous={
                k: Histogram(tuple(float(e) for e in v["edges"]), tuple(int(c) for c in v["counts"]))
                for k, v in raw["continuous"].items()
            },
            categorical={k: {str(c): int(n) for c, n in v.items()} for k, v in raw["categorical"].items()},
            centroid=centroid,
            datasets=tuple(str(d) for d in raw.get("datasets", ())),
        )


@dataclass(frozen=True)
class ReferenceRow:
    """One reference text with the model's verdict on it."""

    text: str
    source: str
    label: str
    confidence: float
    coins: tuple[str, ...] = ()
    dataset: str = ""


@dataclass(frozen=True)
class InputReference:
    """A model version's input reference: per source, plus the vocabulary the OOV rate uses."""

    model_version: str
    split: str
    vocabulary: frozenset[str]
    sources: dict[str, SourceReference]
    created: str = ""

    def for_source(self, source: str) -> SourceReference | None:
        return self.sources.get(source)

    @classmethod
    def build(
        cls,
        rows: Sequence[ReferenceRow],
        vocabulary: frozenset[str],
        *,
        model_version: str,
        split: str = "validation",
        created: str = "",
        min_rows: int = MIN_REFERENCE_ROWS,
        pooled_source: str | None = REPLAY_SOURCE,
    ) -> InputReference:
        """Reference of ``rows`` per source (and all rows pooled under ``pooled_source``); a
        source with fewer than ``min_rows`` rows gets none."""
        groups: dict[str, list[ReferenceRow]] = {}
        for row in rows:
            groups.setdefault(row.source, []).append(row)
        if pooled_source is not None and pooled_source not in groups:
            groups[pooled_source] = list(rows)
        sources = {
            name: _source_reference(name, group, vocabulary)
            for name, group in sorted(groups.items())
            if len(group) >= min_rows
        }
        return cls(
            model_version=model_version, split=split, vocabulary=vocabulary, sources=sources, created=created
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REFERENCE_FORMAT,
            "model_version": self.model_version,
            "split": self.split,
            "created": self.created,
            "hash_dim": HASH_DIM,
            "features": {k: FEATURE_DESCRIPTIONS[k] for k in (*CONTINUOUS_FEATURES, *CATEGORICAL_FEATURES)},
            "vocabulary": sorted(self.vocabulary),
            "sources": {name: ref.to_dict() for name, ref in self.sources.items()},
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> InputReference:
        if raw.get("format") != REFERENCE_FORMAT:
            raise ValueError(f"not an input reference of format {REFERENCE_FORMAT}: {raw.get('format')!r}")
        return cls(
            model_version=str(raw["model_version"]),
            split=str(raw.get("split", "validation")),
            vocabulary=frozenset(str(w) for w in raw["vocabulary"]),
            sources={name: SourceReference.from_dict(name, ref) for name, ref in raw["sources"].items()},
            created=str(raw.get("created", "")),
        )


def _source_reference(name: str, rows: Sequence[ReferenceRow], vocabulary: frozenset[str]) -> SourceReference:
    words = [tokens(r.text) for r in rows]
    bags = [hashed_bag(w) for w in words]
    centroid = np.mean([_dense_unit(b) for b in bags], axis=0)
    norm = float(np.linalg.norm(centroid))
    unit = centroid / norm if norm > 0 else centroid
    unit_list = [float(x) for x in unit]
    values = {
        "length": [float(len(r.text)) for r in rows],
        "confidence": [float(r.confidence) for r in rows],
        "oov": [oov_rate(w, vocabulary) for w in words],
        "distance": [bag_distance(b, unit_list) for b in bags],
    }
    categorical = {
        "label": {lab: sum(1 for r in rows if r.label == lab) for lab in sorted({r.label for r in rows})},
        "coin": {},
    }
    for row in rows:
        coin = primary_coin(row.coins)
        categorical["coin"][coin] = categorical["coin"].get(coin, 0) + 1
    return SourceReference(
        source=name,
        n=len(rows),
        continuous={k: Histogram.from_values(v) for k, v in values.items()},
        categorical=categorical,
        centroid=tuple(round(x, 6) for x in unit_list),
        datasets=tuple(sorted({r.dataset for r in rows if r.dataset})),
    )


class LiveSample:
    """One source's live window: raw continuous values (a bounded reservoir) and category counts.

    Adding a post costs a few appends; binning and the tests run once, when the window closes.
    """

    def __init__(self, max_values: int = 20_000, seed: int = 0) -> None:
        self.max_values = max_values
        self.n = 0
        self.values: dict[str, list[float]] = {k: [] for k in CONTINUOUS_FEATURES}
        self.seen: dict[str, int] = dict.fromkeys(CONTINUOUS_FEATURES, 0)
        self.counts: dict[str, dict[str, int]] = {k: {} for k in CATEGORICAL_FEATURES}
        self._rng = random.Random(seed)  # nosec B311 # reservoir sampling, not security

    def add(self, continuous: dict[str, float], categorical: dict[str, str]) -> None:
        self.n += 1
        for feature, value in continuous.items():
            seen = self.seen[feature] = self.seen[feature] + 1
            values = self.values[feature]
            if len(values) < self.max_values:
                values.append(value)
            else:  # reservoir sampling keeps a uniform sample of the whole window
                slot = self._rng.randrange(seen)
                if slot < self.max_values:
                    values[slot] = value
        for feature, category in categorical.items():
            counts = self.counts[feature]
            counts[category] = counts.get(category, 0) + 1


def post_features(
    text: str,
    coins: Sequence[str],
    label: str,
    confidence: float,
    reference: SourceReference | None,
    vocabulary: frozenset[str] | None,
) -> tuple[dict[str, float], dict[str, str]]:
    """(continuous, categorical) features of one scored post; ``oov`` and ``distance`` need the
    vocabulary and the source's centroid, so they are left out without a reference."""
    continuous = {"length": float(len(text)), "confidence": float(confidence)}
    if reference is not None and vocabulary is not None:
        words = tokens(text)
        continuous["oov"] = oov_rate(words, vocabulary)
        continuous["distance"] = bag_distance(hashed_bag(words), reference.centroid)
    return continuous, {"label": str(label), "coin": primary_coin(coins)}


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's comparison: PSI, the test's statistic and p-value, and whether it drifted."""

    feature: str
    test: str  # "ks" or "chi2"
    psi: float
    statistic: float
    p_value: float
    n: int
    drifted: bool

    def describe(self) -> str:
        name = "D" if self.test == "ks" else "chi2"
        return (
            f"{FEATURE_DESCRIPTIONS.get(self.feature, self.feature)} (PSI {self.psi:.2f}, "
            f"{self.test.upper()} {name}={self.statistic:.3g}, p={self.p_value:.2g}, n={self.n})"
        )


class SourceStatus(StrEnum):
    OK = "ok"
    DRIFT = "drift"
    NO_REFERENCE = "no_reference"
    INSUFFICIENT = "insufficient"


@dataclass(frozen=True)
class DriftVerdict:
    """A source's live window against its reference: the status and every feature compared."""

    source: str
    status: SourceStatus
    records: int
    features: tuple[FeatureDrift, ...] = ()
    reason: str = ""

    @property
    def drifted(self) -> tuple[FeatureDrift, ...]:
        return tuple(f for f in self.features if f.drifted)

    def summary(self) -> str:
        if self.status is SourceStatus.DRIFT:
            return f"source {self.source}: " + "; ".join(f.describe() for f in self.drifted)
        return f"source {self.source}: {self.status.value}" + (f" ({self.reason})" if self.reason else "")


def compare_continuous(
    feature: str, reference: Histogram, values: Sequence[float], *, psi_threshold: float, alpha: float
) -> FeatureDrift:
    live = [int(x) for x in reference.bin_counts(values)]
    value = psi(reference.counts, live)
    d, p = binned_ks(reference.counts, live)
    drifted = value > psi_threshold and p < alpha
    return FeatureDrift(feature, "ks", round(value, 6), round(d, 6), p, len(values), drifted)


def compare_categorical(
    feature: str, reference: dict[str, int], counts: dict[str, int], *, psi_threshold: float, alpha: float
) -> FeatureDrift:
    keys = sorted(set(reference) | {OTHER})
    live = dict.fromkeys(keys, 0)
    for key, n in counts.items():
        live[key if key in reference else OTHER] += n
    value = psi([reference.get(k, 0) for k in keys], [live[k] for k in keys])
    stat, p, _ = chi_square(reference, counts)
    drifted = value > psi_threshold and p < alpha
    return FeatureDrift(feature, "chi2", round(value, 6), round(stat, 6), p, sum(counts.values()), drifted)


def judge_source(
    source: str,
    reference: SourceReference | None,
    live: LiveSample,
    *,
    min_records: int,
    psi_threshold: float = 0.25,
    alpha: float = 0.01,
    min_reference: int = MIN_REFERENCE_ROWS,
) -> DriftVerdict:
    """Compare one source's live window with its reference, feature by feature.

    No reference (or one smaller than ``min_reference``): ``no_reference``, never a drift, so
    a source the model was not trained for is reported, not flagged forever. Fewer than
    ``min_records`` live posts (overall, or for one feature): not judged.
    """
    if reference is None or reference.n < min_reference:
        reason = "no reference for this source" if reference is None else f"reference has {reference.n} rows"
        return DriftVerdict(source, SourceStatus.NO_REFERENCE, live.n, reason=reason)
    if live.n < min_records:
        return DriftVerdict(
            source, SourceStatus.INSUFFICIENT, live.n, reason=f"{live.n} posts < {min_records}"
        )
    features: list[FeatureDrift] = []
    for feature in CONTINUOUS_FEATURES:
        values = live.values[feature]
        if feature in reference.continuous and len(values) >= min_records:
            features.append(
                compare_continuous(
                    feature, reference.continuous[feature], values, psi_threshold=psi_threshold, alpha=alpha
                )
            )
    for feature in CATEGORICAL_FEATURES:
        counts = live.counts[feature]
        if reference.categorical.get(feature) and sum(counts.values()) >= min_records:
            features.append(
                compare_categorical(
                    feature, reference.categorical[feature], counts, psi_threshold=psi_threshold, alpha=alpha
                )
            )
    status = SourceStatus.DRIFT if any(f.drifted for f in features) else SourceStatus.OK
    return DriftVerdict(source, status, live.n, tuple(features))
