"""The linear member stored as JSON + numpy arrays: identical predictions, nothing unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from model_export.bundle import BUNDLE_ROOT
from model_export.data import load_corpus
from model_export.train import build_linear
from scoring.linear import (
    LINEAR_ARRAYS,
    LINEAR_JSON,
    ServedLinear,
    WordCachedCharVectorizer,
    load_linear,
    save_linear,
)
from scoring.registry_uri import ModelLoadError

pytestmark = pytest.mark.unit

TRAIN = [
    "Bitcoin surges to a new high 🚀 $BTC",
    "Exchange hacked, users lose millions",
    "The company publishes its report on Tuesday",
    "$ETH looking bullish, great rally",
    "Profit fell sharply, bad quarter",
    "Shares were flat in quiet trading",
] * 4
LABELS = np.array([2, 0, 1, 2, 0, 1] * 4)
UNSEEN = ["SOL rally 🚀 to the moon", "rug pull, funds lost", "an entirely unseen sentence", "Report FLAT"]


@pytest.fixture(scope="module")
def fitted() -> Pipeline:
    return build_linear(c=4.0, seed=13).fit(TRAIN, LABELS)


def test_round_trip_predicts_exactly_like_the_fitted_pipeline(fitted: Pipeline, tmp_path: Path) -> None:
    save_linear(fitted, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LINEAR_JSON, LINEAR_ARRAYS]
    loaded = load_linear(tmp_path)
    np.testing.assert_array_equal(loaded.predict_proba(UNSEEN), fitted.predict_proba(UNSEEN))
    word = dict(loaded.named_steps["features"].transformer_list)["word"]
    assert word.vocabulary_ == dict(fitted.named_steps["features"].transformer_list)["word"].vocabulary_


def test_the_word_cache_counts_exactly_like_scikit_learn(
    fitted: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loaded char_wb member counts a word's n-grams once and reuses them; the matrix
    and the probabilities must be scikit-learn's to the bit, the cache full or not."""
    monkeypatch.setattr(WordCachedCharVectorizer, "cache_words", 5)  # starts over often
    save_linear(fitted, tmp_path)
    loaded = load_linear(tmp_path)
    char = dict(loaded.named_steps["features"].transformer_list)["char"]
    assert isinstance(char, WordCachedCharVectorizer)
    texts = [
        *TRAIN,
        *UNSEEN,
        "rally rally RALLY rally, the rally!",  # a word repeated, in several cases
        "tabs\tand\nnew  lines   between words",
        "Ünïcödé café naïve 🚀🚀 $SOL",
        "",
        "   ",
        "x" * 300,
    ] * 3
    expected = dict(fitted.named_steps["features"].transformer_list)["char"].transform(texts)
    got = char.transform(texts)
    assert type(got) is type(expected) and (got != expected).nnz == 0
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_array_equal(got.indptr, expected.indptr)
    np.testing.assert_array_equal(got.data, expected.data)
    np.testing.assert_array_equal(loaded.predict_proba(texts), fitted.predict_proba(texts))


def test_a_pipeline_with_code_in_it_is_refused_at_save(fitted: Pipeline, tmp_path: Path) -> None:
    fitted.named_steps["features"].transformer_list[0][1].set_params(tokenizer=str.split)
    try:
        with pytest.raises(ValueError, match=r"\['tokenizer'\] cannot be stored as data"):
            save_linear(fitted, tmp_path)
    finally:
        fitted.named_steps["features"].transformer_list[0][1].set_params(tokenizer=None)


def test_an_object_array_is_never_unpickled(fitted: Pipeline, tmp_path: Path) -> None:
    save_linear(fitted, tmp_path)
    with np.load(tmp_path / LINEAR_ARRAYS) as stored:
        arrays = dict(stored)
    arrays["coef"] = np.array([{"pickled": "object"}], dtype=object)
    np.savez(tmp_path / LINEAR_ARRAYS, **arrays)  # object arrays are stored as pickles
    with pytest.raises(ModelLoadError, match="Object arrays cannot be loaded when allow_pickle=False"):
        load_linear(tmp_path)


def test_malformed_files_are_a_load_error(fitted: Pipeline, tmp_path: Path) -> None:
    save_linear(fitted, tmp_path)
    spec = json.loads((tmp_path / LINEAR_JSON).read_text("utf-8"))
    (tmp_path / LINEAR_JSON).write_text(json.dumps({**spec, "format": "other/9"}), "utf-8")
    with pytest.raises(ModelLoadError, match="format 'other/9'"):
        load_linear(tmp_path)
    spec["vectorizers"][0]["terms"] = spec["vectorizers"][0]["terms"][:-1]
    (tmp_path / LINEAR_JSON).write_text(json.dumps(spec), "utf-8")
    with pytest.raises(ModelLoadError, match="idf length"):
        load_linear(tmp_path)


EDGE_TEXTS = [
    "rally rally RALLY rally, the rally!",
    "tabs\tand\nnew  lines   between words",
    "Ünïcödé café naïve 🚀🚀 $SOL",
    "",
    "   ",
    "x" * 300,
    "no known word at all: qwzx vbnm",
]


def assert_served_like_pipeline(pipeline: Pipeline, texts: list[str]) -> None:
    served = ServedLinear(pipeline)
    for size in (1, 3, len(texts)):
        for start in range(0, len(texts), size):
            batch = texts[start : start + size]
            expected, got = pipeline.predict_proba(batch), served.predict_proba(batch)
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)  # to the bit, not approximately


def test_the_served_path_predicts_to_the_bit_like_the_pipeline(fitted: Pipeline, tmp_path: Path) -> None:
    """Serving skips scikit-learn's per-call checks; the numbers must not move."""
    save_linear(fitted, tmp_path)
    assert_served_like_pipeline(load_linear(tmp_path), [*TRAIN, *UNSEEN, *EDGE_TEXTS])
    assert_served_like_pipeline(fitted, [*UNSEEN, *EDGE_TEXTS])


@pytest.mark.parametrize(
    "params",
    [
        {"norm": "l1", "sublinear_tf": False},
        {"norm": None, "use_idf": False},
        {"binary": True, "smooth_idf": False},
    ],
    ids=["l1-raw-tf", "no-norm-no-idf", "binary"],
)
def test_the_served_path_follows_each_weighting_option(params: dict[str, object]) -> None:
    """Every TF-IDF option the stored format keeps is served as scikit-learn computes it."""
    pipeline = Pipeline(
        [
            (
                "features",
                FeatureUnion(
                    [
                        ("word", TfidfVectorizer(ngram_range=(1, 2), **params)),
                        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), **params)),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    ).fit(TRAIN, LABELS)
    assert_served_like_pipeline(pipeline, [*UNSEEN, *EDGE_TEXTS])


def test_the_bundled_member_is_served_to_the_bit_on_shipped_text() -> None:
    """The default model's own linear member, on thousands of shipped texts of every source."""
    texts = load_corpus(seed=13)["text"].tolist()[::8]
    assert len(texts) > 3000
    pipeline = load_linear(BUNDLE_ROOT / "artifact")
    expected = pipeline.predict_proba(texts)
    served = ServedLinear(pipeline)
    got = np.vstack([served.predict_proba(texts[i : i + 50]) for i in range(0, len(texts), 50)])
    np.testing.assert_array_equal(got, expected)


def test_a_binary_classifier_is_refused_for_serving() -> None:
    """Two classes take scikit-learn's one-vs-rest path; ServedLinear only serves softmax."""
    pipeline = Pipeline(
        [("features", FeatureUnion([("word", TfidfVectorizer())])), ("clf", LogisticRegression())]
    ).fit(TRAIN, LABELS.clip(0, 1))
    with pytest.raises(ValueError, match="multinomial"):
        ServedLinear(pipeline)
