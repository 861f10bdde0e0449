"""The combiner weighs every dataset the same and keeps only members that help on every dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_export.combiner import CombinerPolicy, dataset_weights, fit_combiner
from scoring.ensemble import FEATURE_NAMES, MEMBER_FEATURES, Combiner, combiner_features


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
        CombinerPolicy(balance_datasets=False, select_members=False),
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
        CombinerPolicy(select_members=False, balance_datasets=False),
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
