"""Fit the stacking combiner so that every member earns its place on every domain.

The validation split is dominated by tweets (TweetEval and Twitter Financial News are four
fifths of it), so a combiner fitted on it pooled learns what helps tweets and may cost the
small news and crypto sets; weighing each dataset the same instead lets 75 stock tweets,
labelled without a neutral class, teach the combiner that neutral is a fifth rarer than it is,
which costs the tweet sets. Two rules keep it honest:

* **every dataset counts in the choice**: candidates are scored per dataset and averaged
  over datasets, whatever the rows' weights in the fit. The fit's weighting is itself a
  candidate (:data:`WEIGHTINGS`: each dataset the same total weight, ``n / (k * n_dataset)``;
  by the square root of its rows; or each row the same);
* **a member stays only if it helps**: every (weighting, subset of the optional members: the
  linear and the lexicon member; the transformer is always in) is scored by cross-validation
  on the validation split, per dataset. A candidate is eligible when no dataset's out-of-fold
  weighted F1 falls more than ``tolerance`` below the transformer alone; the eligible one with
  the best mean over datasets wins (fewer members on a tie, then the earlier weighting). When
  none is eligible, the one whose worst dataset loses least wins. A dropped
  member's coefficients are zero, so serving needs no second code path, and the choice is
  recorded in ``combiner.json`` and the model card.

Cross-validation folds are stratified by dataset and label and seeded, so a rerun on the
same data chooses the same members.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from scoring.ensemble import FEATURE_NAMES, MEMBER_FEATURES, Combiner, combiner_features

log = logging.getLogger(__name__)

OPTIONAL_MEMBERS: tuple[str, ...] = ("linear", "lexicon")
"""Members the combiner may drop; the transformer is the backbone and always stays."""

WEIGHTINGS: dict[str, float] = {"datasets": 0.0, "sqrt": 0.5, "rows": 1.0}
"""How the combiner's fit weighs a dataset of ``n`` rows: in total ``n ** power``, so
``datasets`` gives every dataset the same weight, ``rows`` every row, ``sqrt`` lies between."""


@dataclass(frozen=True)
class CombinerPolicy:
    """How the combiner is fitted and how members are chosen (logged with the run)."""

    c: float = 1.0
    weightings: tuple[str, ...] = tuple(WEIGHTINGS)  # tried in this order; the first without selection
    select_members: bool = True
    folds: int = 5
    tolerance: float = 0.01  # weighted F1 a dataset may lose against the transformer alone (CV noise)
    seed: int = 13


@dataclass
class CombinerChoice:
    """The fitted combiner and why it looks the way it does (for metadata and the card)."""

    combiner: Combiner
    members: tuple[str, ...]
    dropped: tuple[str, ...]
    weighting: str
    candidates: list[dict[str, Any]] = field(default_factory=list)

    policy: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why no selection ran, when none did

    def report(self) -> dict[str, Any]:
        return {
            "members": list(self.members),
            "dropped": list(self.dropped),
            "weighting": self.weighting,
            "candidates": self.candidates,
            "policy": self.policy,
            "skipped": self.skipped,
        }


def dataset_weights(datasets: np.ndarray, weighting: str = "datasets") -> np.ndarray:
    """Sample weights (mean 1) under which a dataset of ``n`` rows weighs ``n ** power`` in
    total (:data:`WEIGHTINGS`); by default each dataset carries the same total weight."""
    try:
        power = WEIGHTINGS[weighting]
    except KeyError:
        raise ValueError(f"unknown combiner weighting {weighting!r}; known: {sorted(WEIGHTINGS)}") from None
    _, inverse, counts = np.unique(datasets, return_inverse=True, return_counts=True)
    per_row = (counts.astype(np.float64) ** power / counts)[inverse]
    return per_row * len(datasets) / per_row.sum()


def _columns(members: tuple[str, ...]) -> list[int]:
    wanted = {name for member in ("transformer", *members) for name in MEMBER_FEATURES[member]}
    return [i for i, name in enumerate(FEATURE_NAMES) if name in wanted]


def _per_dataset_f1(y: np.ndarray, pred: np.ndarray, datasets: np.ndarray) -> dict[str, float]:
    return {
        str(ds): float(f1_score(y[datasets == ds], pred[datasets == ds], average="weighted", zero_division=0))
        for ds in sorted(set(datasets.tolist()))
    }


def _fit(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray | None, policy: CombinerPolicy
) -> LogisticRegression:
    lr = LogisticRegression(C=policy.c, max_iter=3000, random_state=policy.seed)
    return lr.fit(x, y, sample_weight=weights)


def _strata(y: np.ndarray, datasets: np.ndarray, folds: int) -> np.ndarray | None:
    """Fold strata: dataset x label, falling back to the dataset, then to the label alone,
    where a stratum is rarer than the fold count; the label for every row when that still
    leaves a rare stratum; None when even a label is rarer than the fold count."""
    if np.unique(y, return_counts=True)[1].min() < folds:
        return None
    strata = np.char.add(datasets.astype(str), y.astype(str))
    for fallback in (datasets.astype(str), y.astype(str)):
        _, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
        rare = counts[inverse] < folds
        if not rare.any():
            return strata
        strata = np.where(rare, fallback, strata)
    _, counts = np.unique(strata, return_counts=True)
    return strata if counts.min() >= folds else y.astype(str)


def _out_of_fold(
    x: np.ndarray, y: np.ndarray, strata: np.ndarray, weights: np.ndarray | None, policy: CombinerPolicy
) -> np.ndarray:
    pred = np.zeros(len(y), dtype=np.int64)
    splitter = StratifiedKFold(policy.folds, shuffle=True, random_state=policy.seed)
    for train_idx, test_idx in splitter.split(x, strata):
        w = None if weights is None else weights[train_idx]
        pred[test_idx] = _fit(x[train_idx], y[train_idx], w, policy).predict(x[test_idx])
    return pred


def fit_combiner(
    p_transformer: np.ndarray,
    p_linear: np.ndarray,
    lexicon: np.ndarray,
    y: np.ndarray,
    datasets: np.ndarray,
    policy: CombinerPolicy | None = None,
) -> CombinerChoice:
    """Choose the members and fit the stacking weights on held-out (validation) rows."""
    policy = policy or CombinerPolicy()
    if not policy.weightings:
        raise ValueError("CombinerPolicy.weightings is empty: name at least one of " + ", ".join(WEIGHTINGS))
    x = combiner_features(p_transformer, p_linear, lexicon)
    datasets = np.asarray(datasets).astype(str)
    weights = {name: dataset_weights(datasets, name) for name in policy.weightings}
    subsets = [
        tuple(m for m in OPTIONAL_MEMBERS if m in chosen)
        for r in range(len(OPTIONAL_MEMBERS), -1, -1)
        for chosen in itertools.combinations(OPTIONAL_MEMBERS, r)
    ]
    members, weighting = subsets[0], policy.weightings[0]
    candidates: list[dict[str, Any]] = []
    strata = _strata(y, datasets, policy.folds) if policy.select_members else None
    skipped = None if policy.select_members else "member choice off (CombinerPolicy.select_members)"
    if policy.select_members and strata is None:
        skipped = f"a label has fewer than {policy.folds} validation rows: every member kept"
        log.warning("member choice skipped: %s", skipped)
    if strata is not None:
        baseline = _per_dataset_f1(y, p_transformer.argmax(1), datasets)
        for name in policy.weightings:
            for subset in subsets:
                per_dataset = _per_dataset_f1(
                    y, _out_of_fold(x[:, _columns(subset)], y, strata, weights[name], policy), datasets
                )
                worst = min(per_dataset[ds] - baseline[ds] for ds in per_dataset)
                candidates.append(
                    {
                        "members": ["transformer", *subset],
                        "weighting": name,
                        "mean_f1": float(np.mean(list(per_dataset.values()))),
                        "worst_gap": float(worst),
                        "eligible": bool(worst >= -policy.tolerance),
                        "datasets": per_dataset,
                    }
                )
        candidates.append({"members": ["transformer (raw, no combiner)"], "datasets": baseline})
        scored = candidates[:-1]
        eligible = [c for c in scored if c["eligible"]]
        # best mean; on a tie (to 1e-9) the smaller subset, then the earlier weighting (max
        # keeps the first of equal keys, and candidates run weighting by weighting);
        # none eligible: the smallest worst gap
        if eligible:
            best = max(eligible, key=lambda c: (round(c["mean_f1"], 9), -len(c["members"])))
        else:
            best = max(scored, key=lambda c: (c["worst_gap"], -len(c["members"])))
        best["chosen"] = True
        members = tuple(m for m in OPTIONAL_MEMBERS if m in best["members"])
        weighting = best["weighting"]
    cols = _columns(members)
    lr = _fit(x[:, cols], y, weights[weighting], policy)
    if list(lr.classes_) != [0, 1, 2]:
        raise ValueError(f"the combiner's rows lack classes: {lr.classes_}")
    coef = np.zeros((3, len(FEATURE_NAMES)))
    coef[:, cols] = lr.coef_
    dropped = tuple(m for m in OPTIONAL_MEMBERS if m not in members)
    return CombinerChoice(
        combiner=Combiner(coef=coef, intercept=lr.intercept_.astype(np.float64), dropped=dropped),
        members=("transformer", *members),
        dropped=dropped,
        weighting=weighting,
        candidates=candidates,
        policy=asdict(policy),
        skipped=skipped,
    )
