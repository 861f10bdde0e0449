"""Prediction-drift statistics: PSI, confidence bins, the reference distribution."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.drift import CONFIDENCE_EDGES, ReferenceDistribution, confidence_bin, psi

pytestmark = pytest.mark.unit


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    assert psi([0.3, 0.4, 0.3], [30, 40, 30]) == pytest.approx(0.0, abs=1e-12)  # shares vs counts
    small = psi([0.3, 0.4, 0.3], [0.32, 0.38, 0.30])
    large = psi([0.3, 0.4, 0.3], [0.7, 0.2, 0.1])
    assert 0 < small < 0.01 < 0.25 < large
    expected = (
        (0.7 - 0.3) * np.log(0.7 / 0.3) + (0.2 - 0.4) * np.log(0.2 / 0.4) + (0.1 - 0.3) * np.log(0.1 / 0.3)
    )
    assert large == pytest.approx(expected)
    assert np.isfinite(psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]))  # empty bins are floored, not infinite
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])


def test_confidence_bins_cover_one_third_to_one() -> None:
    assert len(CONFIDENCE_EDGES) == 11
    assert confidence_bin(1 / 3) == 0 and confidence_bin(0.2) == 0  # clipped
    assert confidence_bin(0.999) == 9 and confidence_bin(1.0) == 9
    assert confidence_bin(0.5) == int((0.5 - 1 / 3) / ((1 - 1 / 3) / 10))


def test_reference_from_probabilities_roundtrips_and_measures_drift() -> None:
    rng = np.random.default_rng(7)
    proba = rng.dirichlet([2, 3, 2], size=2000)
    reference = ReferenceDistribution.from_probabilities(proba)
    assert reference.n == 2000 and sum(reference.label_shares) == pytest.approx(1.0)
    assert sum(reference.confidence_shares) == pytest.approx(1.0)
    assert ReferenceDistribution.from_dict(reference.to_dict()) == reference

    same = ReferenceDistribution.from_probabilities(rng.dirichlet([2, 3, 2], size=2000))
    n = 2000
    unchanged = reference.drift(
        [round(s * n) for s in same.label_shares], [round(s * n) for s in same.confidence_shares]
    )
    assert unchanged["labels"] < 0.05 and unchanged["confidence"] < 0.05
    # out-of-distribution inputs: the model hesitates, confidence collapses towards 1/3
    unsure = ReferenceDistribution.from_probabilities(rng.dirichlet([20, 20, 20], size=2000))
    shifted = reference.drift(
        [round(s * n) for s in unsure.label_shares], [round(s * n) for s in unsure.confidence_shares]
    )
    assert shifted["confidence"] > 0.25
    with pytest.raises(ValueError):
        ReferenceDistribution.from_dict({**reference.to_dict(), "confidence_edges": [0.5, 1.0]})
