"""Input drift: features, PSI with KS / chi-square verdicts, per-source references, minimum sizes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from scoring.drift import (
    CATEGORICAL_FEATURES,
    CONTINUOUS_FEATURES,
    HASH_DIM,
    InputReference,
    LiveSample,
    ReferenceRow,
    SourceStatus,
    bag_distance,
    binned_ks,
    chi_square,
    hashed_bag,
    judge_source,
    oov_rate,
    post_features,
    tokens,
)

pytestmark = pytest.mark.unit

SOCIAL = ["moon", "hodl", "pump", "lol", "buy", "dip", "wagmi", "rekt", "bitcoin", "eth", "to", "the"]
NEWS = ["shares", "market", "regulator", "billion", "report", "quarter", "bank", "bitcoin", "said", "the"]
LABELS = ["negative", "neutral", "positive"]
VOCAB = frozenset(SOCIAL + NEWS)


def texts(rng: np.random.Generator, words: list[str], low: int, high: int, n: int) -> list[str]:
    return [" ".join(rng.choice(words, size=int(rng.integers(low, high)))) for _ in range(n)]


def rows(rng: np.random.Generator, source: str, n: int) -> list[ReferenceRow]:
    """Reddit: short slang posts, mostly positive; news: long headlines, mostly neutral."""
    social = source == "reddit"
    out = []
    for text in texts(rng, SOCIAL if social else NEWS, 4, 12, n) if social else texts(rng, NEWS, 14, 30, n):
        label = rng.choice(LABELS, p=[0.2, 0.2, 0.6] if social else [0.2, 0.6, 0.2])
        coins = ("bitcoin",) if "bitcoin" in text else ()
        out.append(ReferenceRow(text, source, str(label), float(rng.uniform(0.5, 0.95)), coins))
    return out


def reference(seed: int = 1) -> InputReference:
    rng = np.random.default_rng(seed)
    return InputReference.build(
        rows(rng, "reddit", 1500) + rows(rng, "news", 1500), VOCAB, model_version="m/1"
    )


def live(rows_: list[ReferenceRow], ref: InputReference, source: str) -> LiveSample:
    sample = LiveSample()
    src = ref.for_source(source)
    for row in rows_:
        sample.add(*post_features(row.text, row.coins, row.label, row.confidence, src, ref.vocabulary))
    return sample


def test_text_features_oov_and_bag_distance() -> None:
    assert tokens("BTC to the MOON! $eth #hodl") == ["btc", "to", "the", "moon", "$eth", "#hodl"]
    assert oov_rate(["moon", "lol", "zzz", "qqq"], VOCAB) == 0.5
    assert oov_rate([], VOCAB) == 1.0  # nothing recognisable
    ref = reference().for_source("reddit")
    assert ref is not None and len(ref.centroid) == HASH_DIM
    near = bag_distance(hashed_bag(tokens("moon hodl pump lol buy dip wagmi rekt")), ref.centroid)
    far = bag_distance(hashed_bag(tokens("regulator quarterly billion shares report bank")), ref.centroid)
    assert 0 <= near < far <= 2
    assert bag_distance({}, ref.centroid) == 1.0
    continuous, categorical = post_features("moon lol", ["bitcoin", "eth"], "positive", 0.8, None, None)
    assert set(continuous) == {"length", "confidence"}  # oov and distance need the reference
    assert categorical == {"label": "positive", "coin": "bitcoin"}  # the first coin only


def test_binned_ks_agrees_with_scipy_and_is_conservative() -> None:
    rng = np.random.default_rng(3)
    ref = reference().for_source("reddit")
    assert ref is not None
    hist = ref.continuous["confidence"]
    same = rng.uniform(0.5, 0.95, 800)
    d, p = binned_ks(hist.counts, hist.bin_counts(same))
    assert p > 0.01 and d < 0.1
    shifted = rng.uniform(0.4, 0.7, 800)
    d_binned, p_binned = binned_ks(hist.counts, hist.bin_counts(shifted))
    exact = ks_2samp(rng.uniform(0.5, 0.95, 1500), shifted)
    assert p_binned < 1e-6 and d_binned <= exact.statistic + 0.05
    with pytest.raises(ValueError):
        binned_ks([1, 2], [0, 0])


def test_chi_square_merges_sparse_cells_and_maps_unknowns_to_other() -> None:
    ref = {"bitcoin": 600, "ethereum": 300, "none": 95, "dogecoin": 3, "solana": 2}
    same = {"bitcoin": 120, "ethereum": 60, "none": 20}
    stat, p, dof = chi_square(ref, same)
    assert p > 0.5 and dof >= 1
    moved = {"bitcoin": 40, "ethereum": 40, "none": 20, "pepe": 100}  # a coin the reference never saw
    stat, p, dof = chi_square(ref, moved)
    assert p < 1e-10 and stat > 100
    assert chi_square({"a": 10}, {"a": 5}) == (0.0, 1.0, 0)  # one cell: nothing to test


def test_each_source_is_judged_against_its_own_reference() -> None:
    ref = reference()
    rng = np.random.default_rng(7)
    reddit_window = live(rows(rng, "reddit", 600), ref, "reddit")
    verdict = judge_source("reddit", ref.for_source("reddit"), reddit_window, min_records=200)
    assert verdict.status is SourceStatus.OK and verdict.drifted == ()
    assert {f.feature for f in verdict.features} == set(CONTINUOUS_FEATURES) | set(CATEGORICAL_FEATURES)
    assert {f.test for f in verdict.features} == {"ks", "chi2"}
    # a Reddit-only feed against the pooled reference (both kinds of text) would look drifted
    pooled = judge_source("reddit", ref.for_source("replay"), reddit_window, min_records=200)
    assert pooled.status is SourceStatus.DRIFT


def test_a_shift_names_the_feature_the_source_and_the_statistics() -> None:
    ref = reference()
    rng = np.random.default_rng(8)
    headlines_on_reddit = [
        ReferenceRow(r.text, "reddit", r.label, r.confidence, r.coins) for r in rows(rng, "news", 600)
    ]
    verdict = judge_source(
        "reddit", ref.for_source("reddit"), live(headlines_on_reddit, ref, "reddit"), min_records=200
    )
    assert verdict.status is SourceStatus.DRIFT
    drifted = {f.feature: f for f in verdict.drifted}
    assert {"length", "distance", "label"} <= set(drifted)
    assert "confidence" not in drifted  # same confidence distribution
    length = drifted["length"]
    assert length.test == "ks" and length.psi > 0.25 and length.p_value < 0.01 and length.n == 600
    assert "source reddit" in verdict.summary() and "text length (PSI" in verdict.summary()
    assert "KS D=" in length.describe()


def test_new_vocabulary_raises_the_oov_rate() -> None:
    ref = reference()
    rng = np.random.default_rng(9)
    slang = [*SOCIAL, "ngmi", "fud", "gm", "ser", "anon", "degen"]
    shifted = [ReferenceRow(t, "reddit", "positive", 0.7) for t in texts(rng, slang, 4, 12, 600)]
    verdict = judge_source("reddit", ref.for_source("reddit"), live(shifted, ref, "reddit"), min_records=200)
    assert "oov" in {f.feature for f in verdict.drifted}


def test_no_reference_and_minimum_sizes_are_reported_never_flagged() -> None:
    ref = reference()
    rng = np.random.default_rng(10)
    window = live(rows(rng, "news", 600), ref, "prices")
    unknown = judge_source("prices", ref.for_source("prices"), window, min_records=200)
    assert unknown.status is SourceStatus.NO_REFERENCE and unknown.drifted == ()
    assert "no reference" in unknown.summary()
    small = InputReference.build(rows(rng, "reddit", 30), VOCAB, model_version="m/2")
    assert small.for_source("reddit") is None  # under MIN_REFERENCE_ROWS: no reference at all
    news = ref.for_source("news")
    assert news is not None
    too_small_ref = judge_source("news", news, window, min_records=200, min_reference=news.n + 1)
    assert too_small_ref.status is SourceStatus.NO_REFERENCE
    few = live(rows(rng, "news", 50), ref, "news")
    assert judge_source("news", news, few, min_records=200).status is SourceStatus.INSUFFICIENT


def test_large_windows_need_a_real_effect_not_just_significance() -> None:
    """A small shift over many posts is significant but below the PSI threshold: not drift."""
    ref = reference()
    news = ref.for_source("news")
    assert news is not None
    rng = np.random.default_rng(11)
    sample = LiveSample()
    for value in rng.uniform(0.53, 0.95, 20_000):  # the reference: uniform over 0.5-0.95
        sample.add({"confidence": float(value)}, {})
    verdict = judge_source("news", news, sample, min_records=200)
    (confidence,) = verdict.features
    assert confidence.p_value < 0.01 and confidence.psi < 0.25 and not confidence.drifted


def test_reference_round_trip_and_bounded_live_sample() -> None:
    ref = reference()
    assert set(ref.sources) == {"news", "reddit", "replay"}  # replay: every row pooled
    raw = ref.to_dict()
    again = InputReference.from_dict(raw)
    assert again.sources == ref.sources and again.vocabulary == VOCAB
    with pytest.raises(ValueError):
        InputReference.from_dict({**raw, "format": "something-else/1"})
    sample = LiveSample(max_values=100)
    for i in range(1000):
        sample.add({"length": float(i)}, {"label": "neutral"})
    assert sample.n == 1000 and len(sample.values["length"]) == 100
    assert sample.counts["label"] == {"neutral": 1000}
    assert np.mean(sample.values["length"]) > 200  # a uniform sample of the window, not its start
