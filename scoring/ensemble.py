"""How the ensemble members' outputs become one calibrated probability vector.

Shared by training (to fit the combiner) and serving (to apply it), so the feature layout
is defined exactly once. The combiner is a multinomial logistic regression (stacking)
fitted on the validation split, on log-probabilities of the transformer and the linear
member plus the four lexicon scores; ``model_export.combiner`` weighs every dataset the same
and zeroes the weights of a member that does not help. A log-loss fit on held-out data gives calibrated
probabilities; the expected calibration error on the test split is logged to check it.
The combiner is stored as plain JSON (weights, intercepts) so serving needs only numpy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EPS = 1e-6
FEATURE_NAMES: tuple[str, ...] = (
    "transformer_log_p_negative",
    "transformer_log_p_neutral",
    "transformer_log_p_positive",
    "linear_log_p_negative",
    "linear_log_p_neutral",
    "linear_log_p_positive",
    "lexicon_neg",
    "lexicon_neu",
    "lexicon_pos",
    "lexicon_compound",
)
MEMBER_FEATURES: dict[str, tuple[str, ...]] = {
    "transformer": FEATURE_NAMES[0:3],
    "linear": FEATURE_NAMES[3:6],
    "lexicon": FEATURE_NAMES[6:10],
}
"""Which stacking features each member contributes (a dropped member's weights are zero)."""


def combiner_features(p_transformer: np.ndarray, p_linear: np.ndarray, lexicon: np.ndarray) -> np.ndarray:
    """(n, 10) stacking features from the three members."""
    return np.hstack([np.log(p_transformer + EPS), np.log(p_linear + EPS), lexicon]).astype(np.float64)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Combiner:
    """Stacking weights: ``p = softmax(x @ coef.T + intercept)``."""

    coef: np.ndarray  # (3, n_features)
    intercept: np.ndarray  # (3,)
    dropped: tuple[str, ...] = ()  # members whose weights are zero because they did not help

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return softmax(features @ self.coef.T + self.intercept)

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "kind": "stacking-logistic-regression",
                    "features": list(FEATURE_NAMES),
                    "coef": self.coef.tolist(),
                    "intercept": self.intercept.tolist(),
                    "dropped_members": list(self.dropped),
                },
                indent=1,
            ),
            "utf-8",
        )

    @classmethod
    def load(cls, path: Path) -> Combiner:
        raw = json.loads(path.read_text("utf-8"))
        if tuple(raw["features"]) != FEATURE_NAMES:
            raise ValueError(f"combiner in {path} was fitted on other features: {raw['features']}")
        return cls(
            coef=np.asarray(raw["coef"], dtype=np.float64),
            intercept=np.asarray(raw["intercept"], dtype=np.float64),
            dropped=tuple(raw.get("dropped_members", ())),
        )
