"""The TF-IDF + logistic regression member stored as data (JSON + numpy arrays), never pickled.

Pickle and joblib run code while loading, so a model from an unauthenticated registry could
run anything in a worker. skops avoids that but is no fit for serving: importing ``skops.io``
walks all of scikit-learn (and imports torch where it is installed) in every scoring process.
The member's fitted state is plain data: each vectorizer's analysis parameters, vocabulary and
idf weights, and the classifier's weights. Loading rebuilds the scikit-learn objects from it
through their public parameters (a fixed ``vocabulary`` and the ``idf_`` setter), so the text
analysis stays scikit-learn's own and predictions are identical to the fitted pipeline.

Files: ``linear.json`` (format, analysis parameters, vocabularies, classes) and
``linear.npz`` (idf vectors, coefficients, intercepts; read with ``allow_pickle=False``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils.extmath import softmax
from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l1, inplace_csr_row_normalize_l2

from scoring.registry_uri import ModelLoadError

LINEAR_JSON = "linear.json"
LINEAR_ARRAYS = "linear.npz"
LINEAR_FILES = (LINEAR_JSON, LINEAR_ARRAYS)
LINEAR_FORMAT = "cryptopulse-tfidf-logreg/1"

# TfidfVectorizer parameters that decide how a text becomes features; those used only by
# ``fit`` are not needed to transform. Any other parameter (a callable tokenizer, file input)
# cannot be stored as data and must keep its default.
_ANALYSIS_PARAMS = (
    "analyzer",
    "ngram_range",
    "lowercase",
    "token_pattern",
    "strip_accents",
    "stop_words",
    "binary",
    "norm",
    "use_idf",
    "smooth_idf",
    "sublinear_tf",
)
_FIT_ONLY_PARAMS = ("min_df", "max_df", "max_features", "vocabulary", "dtype")


class WordCachedCharVectorizer(TfidfVectorizer):
    """A ``char_wb`` TfidfVectorizer that counts a text's n-grams a word at a time, from a cache.

    ``char_wb`` n-grams never cross a word boundary, so a text's counts are the sum of its
    words' counts. scikit-learn slices and looks up every n-gram of every text (~58 us of the
    member's ~77 us for an 18-token post); a word seen before now costs one dict lookup. The
    count matrix, and so every feature and prediction, is identical to scikit-learn's
    (``tests/scoring/test_linear.py``); fitting is scikit-learn's own.
    """

    cache_words = 20_000
    """Words remembered; the cache starts over when full (frequent words come right back)."""

    def _count_vocab(self, raw_documents: Any, fixed_vocab: bool) -> Any:
        if not fixed_vocab or self.analyzer != "char_wb":
            return super()._count_vocab(raw_documents, fixed_vocab)
        cache: dict[str, tuple[np.ndarray, np.ndarray]] = self.__dict__.setdefault("_word_counts", {})
        preprocess = self.build_preprocessor()
        columns: list[np.ndarray] = []
        counts: list[np.ndarray] = []
        per_doc: list[int] = []
        for doc in raw_documents:
            entries = 0
            for word in self._white_spaces.sub(" ", preprocess(self.decode(doc))).split():
                known = cache.get(word)
                if known is None:
                    known = self._word_counts_of(word)
                    if len(cache) >= self.cache_words:
                        cache.clear()
                    cache[word] = known
                columns.append(known[0])
                counts.append(known[1])
                entries += len(known[0])
            per_doc.append(entries)
        rows = np.repeat(np.arange(len(per_doc), dtype=np.int32), per_doc)
        # COO -> CSR sums the repeats of an n-gram across a text's words: the same integer
        # counts as scikit-learn's per-text counter, in sorted column order.
        matrix = sp.coo_matrix(
            (
                np.concatenate(counts) if counts else np.zeros(0, dtype=np.intc),
                (rows, np.concatenate(columns) if columns else np.zeros(0, dtype=np.int32)),
            ),
            shape=(len(per_doc), len(self.vocabulary_)),
            dtype=self.dtype,
        ).tocsr()
        matrix.sort_indices()
        return self.vocabulary_, matrix

    def _word_counts_of(self, word: str) -> tuple[np.ndarray, np.ndarray]:
        """(vocabulary columns, counts) of one word's ``char_wb`` n-grams."""
        found: dict[int, int] = {}
        for gram in self._char_wb_ngrams(word):
            index = self.vocabulary_.get(gram)
            if index is not None:
                found[index] = found.get(index, 0) + 1
        return np.fromiter(found, dtype=np.int32, count=len(found)), np.fromiter(
            found.values(), dtype=np.intc, count=len(found)
        )


def _parts(pipeline: Pipeline) -> tuple[FeatureUnion, LogisticRegression]:
    union, clf = pipeline.named_steps.get("features"), pipeline.named_steps.get("clf")
    if not isinstance(union, FeatureUnion) or not isinstance(clf, LogisticRegression):
        raise TypeError("expected Pipeline([('features', FeatureUnion), ('clf', LogisticRegression)])")
    if union.transformer_weights:
        raise ValueError("FeatureUnion transformer_weights cannot be stored")
    return union, clf


class ServedLinear:
    """The fitted pipeline's ``predict_proba`` without scikit-learn's per-call checks.

    For a batch of 17 posts scikit-learn spent ~2 ms, most of it validating its inputs
    (``check_array``, dataframe probes, parameter checks, a joblib dispatch per vectorizer),
    against ~0.4 ms of counting and arithmetic. The steps below are the same computations on
    the same arrays, in the same order: counts from each vectorizer's own ``_count_vocab``,
    TF-IDF weighting as ``TfidfTransformer.transform`` does it, the union's ``hstack``, and
    the multinomial logistic regression's ``softmax(X @ coef.T + intercept)``. The results
    are bit-identical to ``pipeline.predict_proba`` (``tests/scoring/test_linear.py`` holds
    that on the bundled model and every shipped text). ``pipeline`` stays for everything
    else (explanations).
    """

    def __init__(self, pipeline: Pipeline) -> None:
        union, clf = _parts(pipeline)
        self.pipeline = pipeline
        self._vectorizers = [vectorizer for _, vectorizer in union.transformer_list]
        if len(clf.classes_) <= 2 or getattr(clf, "multi_class", "auto") == "ovr":
            raise ValueError("ServedLinear serves multinomial logistic regression over 3+ classes")
        for vectorizer in self._vectorizers:
            if not isinstance(vectorizer, TfidfVectorizer):
                raise TypeError(f"{type(vectorizer).__name__} is not a TfidfVectorizer")
            if vectorizer.norm not in (None, "l1", "l2"):
                raise ValueError(f"norm {vectorizer.norm!r} is not served")
            vectorizer._check_vocabulary()
        self._coef_t = clf.coef_.T
        self._intercept = clf.intercept_

    def _tfidf(self, vectorizer: TfidfVectorizer, texts: list[str]) -> sp.csr_matrix:
        _, counts = vectorizer._count_vocab(texts, fixed_vocab=True)
        if vectorizer.binary:
            counts.data.fill(1)
        if counts.dtype not in (np.float64, np.float32):
            counts = counts.astype(np.float64)
        if vectorizer.sublinear_tf:
            np.log(counts.data, counts.data)
            counts.data += 1.0
        if vectorizer.use_idf:
            counts.data *= vectorizer.idf_[counts.indices]
        if vectorizer.norm == "l2":
            inplace_csr_row_normalize_l2(counts)
        elif vectorizer.norm == "l1":
            inplace_csr_row_normalize_l1(counts)
        return counts

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        blocks = [self._tfidf(vectorizer, texts) for vectorizer in self._vectorizers]
        features = sp.hstack(blocks).tocsr()
        return np.asarray(softmax(features @ self._coef_t + self._intercept, copy=False))


def save_linear(pipeline: Pipeline, directory: Path) -> None:
    """Write a fitted TF-IDF union + logistic regression pipeline as ``LINEAR_FILES``."""
    union, clf = _parts(pipeline)
    defaults = TfidfVectorizer().get_params()
    vectorizers: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {"coef": clf.coef_, "intercept": clf.intercept_}
    for name, vectorizer in union.transformer_list:
        if not isinstance(vectorizer, TfidfVectorizer):
            raise TypeError(f"feature step {name!r} is {type(vectorizer).__name__}, not a TfidfVectorizer")
        params = vectorizer.get_params()
        unsupported = sorted(
            key
            for key, value in params.items()
            if key not in _ANALYSIS_PARAMS + _FIT_ONLY_PARAMS and value != defaults[key]
        )
        if unsupported:
            raise ValueError(f"feature step {name!r}: parameters {unsupported} cannot be stored as data")
        vocabulary: dict[str, int] = vectorizer.vocabulary_
        vectorizers.append(
            {
                "name": name,
                "params": {key: params[key] for key in _ANALYSIS_PARAMS},
                "dtype": np.dtype(vectorizer.dtype).name,
                "terms": sorted(vocabulary, key=vocabulary.__getitem__),
            }
        )
        arrays[f"idf_{name}"] = vectorizer.idf_
    spec = {"format": LINEAR_FORMAT, "classes": clf.classes_.tolist(), "vectorizers": vectorizers}
    (directory / LINEAR_JSON).write_text(json.dumps(spec, ensure_ascii=False), "utf-8")
    np.savez_compressed(directory / LINEAR_ARRAYS, allow_pickle=False, **arrays)


def load_linear(directory: Path) -> Pipeline:
    """The pipeline stored by :func:`save_linear`; ModelLoadError when the files are malformed."""
    try:
        spec = json.loads((directory / LINEAR_JSON).read_text("utf-8"))
        if spec.get("format") != LINEAR_FORMAT:
            raise ValueError(f"format {spec.get('format')!r}, expected {LINEAR_FORMAT!r}")
        with np.load(directory / LINEAR_ARRAYS, allow_pickle=False) as arrays:
            steps = []
            for stored in spec["vectorizers"]:
                params = {key: stored["params"][key] for key in _ANALYSIS_PARAMS}
                params["ngram_range"] = tuple(params["ngram_range"])
                kind = WordCachedCharVectorizer if params["analyzer"] == "char_wb" else TfidfVectorizer
                vectorizer = kind(**params, dtype=np.dtype(stored["dtype"]).type, vocabulary=stored["terms"])
                vectorizer.idf_ = arrays[f"idf_{stored['name']}"]
                steps.append((str(stored["name"]), vectorizer))
            clf = LogisticRegression()
            clf.classes_ = np.asarray(spec["classes"])
            clf.coef_ = arrays["coef"]
            clf.intercept_ = arrays["intercept"]
    except (OSError, KeyError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ModelLoadError(f"{directory}: not a valid linear member: {type(exc).__name__}: {exc}") from exc
    n_features = sum(len(vectorizer.vocabulary_) for _, vectorizer in steps)
    if clf.coef_.shape != (len(clf.classes_), n_features) or clf.intercept_.shape != (len(clf.classes_),):
        raise ModelLoadError(
            f"{directory}: linear member weights {clf.coef_.shape} do not fit "
            f"{len(clf.classes_)} classes x {n_features} features"
        )
    clf.n_features_in_ = n_features
    return Pipeline([("features", FeatureUnion(steps)), ("clf", clf)])
