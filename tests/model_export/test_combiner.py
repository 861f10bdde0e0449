"""The combiner counts every dataset the same and keeps only members that help on every dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_export.card import _selection
from model_export.combiner import CombinerPolicy, dataset_weights, fit_combiner
from scoring.ensemble import FEATURE_NAMES, MEMBER_FEATURES, Combiner, combiner_features, softmax


def _noisy_proba(y: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities whose argmax is ``y`` on about ``accuracy`` of the rows, otherwise a random class."""
    pred = np.where(rng.random(len(y)) < accuracy, y, rng.integers(0, 3, len(y)))
    proba = np.full((len(y), 3), 0.15)
    proba[np.arange(len(y)), pred] = 0.7
    return proba


def _members(n_big: int, n_small: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A big 'tweets' set and a small 'crypto' set; the linear member is excellent on the tweets
    and confident noise on crypto (as on headlines newer than its vocabulary), the lexicon is
    noise everywhere."""
    rng = np.random.default_rng(seed)
    datasets = np.array(["tweets"] * n_big + ["crypto"] * n_small)
    y = rng.integers(0, 3, n_big + n_small)
    p_transformer = _noisy_proba(y, 0.7, rng)
    p_linear = _noisy_proba(y, 0.95, rng)
    crypto = datasets == "crypto"
    wrong = rng.integers(0, 3, int(crypto.sum()))
    p_linear[crypto] = 0.02
    p_linear[np.flatnonzero(crypto), wrong] = 0.96
    lexicon = rng.normal(size=(len(y), 4))
    return {"pt": p_transformer, "pl": p_linear, "lx": lexicon, "y": y, "ds": datasets}


def test_each_dataset_carries_the_same_total_weight() -> None:
    datasets = np.array(["a"] * 90 + ["b"] * 10)
    weights = dataset_weights(datasets)
    assert np.isclose(weights[datasets == "a"].sum(), weights[datasets == "b"].sum())
    assert np.isclose(weights.mean(), 1.0)


def test_a_dataset_weighs_its_rows_to_the_weightings_power() -> None:
    datasets = np.array(["a"] * 400 + ["b"] * 100)
    for weighting, ratio in (("datasets", 1.0), ("sqrt", 2.0), ("rows", 4.0)):
        weights = dataset_weights(datasets, weighting)
        assert np.isclose(weights[datasets == "a"].sum() / weights[datasets == "b"].sum(), ratio)
        assert np.isclose(weights.mean(), 1.0)
    with pytest.raises(ValueError, match="unknown combiner weighting"):
        dataset_weights(datasets, "random")


def _tweets_and_binary_stock(seed: int) -> dict[str, np.ndarray]:
    """Three-class tweets, on whose neutral rows the transformer is least sure, and a small set
    labelled without a neutral class (like the stock tweets)."""
    rng = np.random.default_rng(seed)
    y = np.r_[rng.integers(0, 3, 2000), rng.choice([0, 2], 75)]
    logits = rng.normal(0.0, 1.0, (len(y), 3))
    logits[np.arange(len(y)), y] += np.where(y == 1, 1.0, 2.0)
    return {
        "pt": softmax(logits),
        "pl": softmax(rng.normal(0.0, 1.0, (len(y), 3))),
        "lx": rng.normal(size=(len(y), 4)),
        "y": y,
        "ds": np.array(["tweets"] * 2000 + ["stock"] * 75),
    }


def test_a_set_without_a_neutral_label_does_not_set_the_neutral_prior() -> None:
    """Weighed as much as the tweets, 75 rows labelled without a neutral class teach the combiner
    that neutral is rare, and neutral tweets flip; the fit's weighting is chosen by
    cross-validation with every dataset counted, so the choice keeps them."""
    m = _tweets_and_binary_stock(0)
    args = (m["pt"], m["pl"], m["lx"], m["y"], m["ds"])
    equal_only = fit_combiner(*args, CombinerPolicy(weightings=("datasets",), seed=1))
    choice = fit_combiner(*args, CombinerPolicy(seed=1))
    assert choice.weighting != "datasets"
    assert {c["weighting"] for c in choice.candidates if "weighting" in c} == {"datasets", "sqrt", "rows"}
    chosen = [c for c in choice.candidates if c.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["weighting"] == choice.weighting
    assert choice.report()["weighting"] == choice.weighting
    card_row = next(line for line in _selection(choice.report()) if "**(chosen)**" in line)
    assert card_row.split(" | ")[1] == choice.weighting

    fresh = _tweets_and_binary_stock(7)
    tweets = fresh["ds"] == "tweets"
    neutral_tweets = tweets & (fresh["y"] == 1)
    x = combiner_features(fresh["pt"], fresh["pl"], fresh["lx"])
    raw = fresh["pt"].argmax(1)

    def neutral_recall(pred: np.ndarray) -> float:
        return float((pred[neutral_tweets] == 1).mean())

    equal_pred = equal_only.combiner.predict_proba(x).argmax(1)
    chosen_pred = choice.combiner.predict_proba(x).argmax(1)
    assert neutral_recall(equal_pred) < neutral_recall(raw) - 0.02
    assert neutral_recall(chosen_pred) > neutral_recall(equal_pred) + 0.05
    assert (chosen_pred == fresh["y"])[tweets].mean() >= (raw == fresh["y"])[tweets].mean()


def test_a_member_that_hurts_one_dataset_is_dropped_and_its_weights_are_zero() -> None:
    m = _members(2000, 300)
    choice = fit_combiner(m["pt"], m["pl"], m["lx"], m["y"], m["ds"], CombinerPolicy(seed=1))
    assert "linear" in choice.dropped
    assert choice.members[0] == "transformer"
    linear_cols = [FEATURE_NAMES.index(f) for f in MEMBER_FEATURES["linear"]]
    assert not choice.combiner.coef[:, linear_cols].any()
    chosen = [c for c in choice.candidates if c.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["eligible"]

    # On fresh rows of the same kind: the old pooled fit of every member trades crypto for the
    # tweets that dominate its rows; the chosen combiner does not cost crypto anything.
    pooled = fit_combiner(
        m["pt"],
        m["pl"],
        m["lx"],
        m["y"],
        m["ds"],
        CombinerPolicy(weightings=("rows",), select_members=False),
    )
    fresh = _members(2000, 300, seed=7)
    crypto = fresh["ds"] == "crypto"
    x = combiner_features(fresh["pt"], fresh["pl"], fresh["lx"])

    def crypto_accuracy(pred: np.ndarray) -> float:
        return float((pred[crypto] == fresh["y"][crypto]).mean())

    transformer = crypto_accuracy(fresh["pt"].argmax(1))
    assert crypto_accuracy(pooled.combiner.predict_proba(x).argmax(1)) < transformer - 0.05
    assert crypto_accuracy(choice.combiner.predict_proba(x).argmax(1)) >= transformer - 0.02


def test_a_member_that_helps_everywhere_stays() -> None:
    m = _members(2000, 300)
    rng = np.random.default_rng(3)
    m["pl"] = _noisy_proba(m["y"], 0.9, rng)  # good on both sets now
    choice = fit_combiner(m["pt"], m["pl"], m["lx"], m["y"], m["ds"], CombinerPolicy(seed=1))
    assert "linear" in choice.members
    linear_cols = [FEATURE_NAMES.index(f) for f in MEMBER_FEATURES["linear"]]
    assert choice.combiner.coef[:, linear_cols].any()


def test_without_selection_every_member_is_fitted(tmp_path: Path) -> None:
    m = _members(600, 120)
    choice = fit_combiner(
        m["pt"],
        m["pl"],
        m["lx"],
        m["y"],
        m["ds"],
        CombinerPolicy(select_members=False, weightings=("rows",)),
    )
    assert choice.members == ("transformer", "linear", "lexicon") and choice.dropped == ()
    assert choice.candidates == []
    assert np.count_nonzero(choice.combiner.coef) == 3 * len(FEATURE_NAMES)


def test_the_dropped_members_survive_a_save_and_load(tmp_path: Path) -> None:
    m = _members(2000, 300)
    choice = fit_combiner(m["pt"], m["pl"], m["lx"], m["y"], m["ds"], CombinerPolicy(seed=1))
    choice.combiner.save(tmp_path / "combiner.json")
    loaded = Combiner.load(tmp_path / "combiner.json")
    assert loaded.dropped == choice.dropped
    np.testing.assert_array_equal(loaded.coef, choice.combiner.coef)


def test_rare_strata_fall_back_rather_than_skip_the_choice() -> None:
    from model_export.combiner import _strata

    y = np.array([0] * 10 + [1] * 10 + [2] * 10 + [0, 0])
    datasets = np.array(["a"] * 30 + ["b"] * 2)
    strata = _strata(y, datasets, 5)
    assert strata is not None and np.unique(strata, return_counts=True)[1].min() >= 5
    assert _strata(np.array([0] * 10 + [1] * 10 + [2] * 3), np.array(["a"] * 23), 5) is None


def test_too_few_rows_keep_every_member_and_say_why() -> None:
    m = _members(40, 0)
    m["y"][:] = np.r_[np.zeros(36, dtype=int), [1, 1, 2, 2]]
    choice = fit_combiner(m["pt"], m["pl"], m["lx"], m["y"], m["ds"])
    assert choice.dropped == () and choice.skipped is not None and "fewer than 5" in choice.skipped
    assert choice.report()["policy"]["folds"] == 5
