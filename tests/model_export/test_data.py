from __future__ import annotations

import pandas as pd
import pytest

from model_export import data as datamod
from scoring.labels import LABEL_TO_ID, LABELS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("dataset", "raw", "expected"),
    [
        ("cryptolin", -1, "negative"),
        ("cryptolin", 0, "neutral"),
        ("cryptolin", 1, "positive"),
        ("cryptolin", "-1", "negative"),
        ("twitter_financial_news", 0, "negative"),  # bearish
        ("twitter_financial_news", 1, "positive"),  # bullish
        ("twitter_financial_news", 2, "neutral"),
        ("financial_phrasebank", "negative", "negative"),
        ("financial_phrasebank", "neutral", "neutral"),
        ("financial_phrasebank", "positive", "positive"),
        ("tweeteval", 0, "negative"),
        ("tweeteval", "1", "neutral"),
        ("tweeteval", 2, "positive"),
        ("stock_tweets", "Negative", "negative"),
        ("stock_tweets", "Positive", "positive"),
    ],
)
def test_label_maps(dataset: str, raw: object, expected: str) -> None:
    assert datamod.map_label(dataset, raw) == expected


def test_every_dataset_has_a_complete_map() -> None:
    assert set(datamod.LABEL_MAPS) == set(datamod.LOADERS)
    for mapping in datamod.LABEL_MAPS.values():
        assert set(mapping.values()) <= set(LABELS)


@pytest.mark.parametrize(
    ("dataset", "raw"), [("cryptolin", 2), ("stock_tweets", "Neutral"), ("tweeteval", 5)]
)
def test_unknown_labels_raise(dataset: str, raw: object) -> None:
    with pytest.raises(datamod.DataError):
        datamod.map_label(dataset, raw)


@pytest.mark.parametrize("name", list(datamod.LOADERS))
def test_shipped_data_loads_with_known_labels(name: str) -> None:
    frame = datamod.LOADERS[name](datamod.DEFAULT_DATA_DIR)
    assert len(frame) > 100
    assert set(frame["label"]) <= set(LABEL_TO_ID.values())
    assert frame["text"].str.strip().str.len().min() > 0


def test_dedup_drops_repeats_and_conflicts() -> None:
    frame = pd.DataFrame(
        {
            "text": ["Bitcoin up", "bitcoin  UP https://t.co/x", "ETH down", "eth down", "solo"],
            "label": [2, 2, 0, 2, 1],
            "dataset": "x",
            "date": pd.NaT,
        }
    )
    out = datamod.deduplicate(frame)
    assert sorted(out["text"]) == ["Bitcoin up", "solo"]


def test_corpus_splits_are_disjoint_and_proportional() -> None:
    corpus = datamod.load_corpus(seed=13)
    for name, part in corpus.groupby("dataset"):
        shares = part["split"].value_counts(normalize=True)
        assert abs(shares["train"] - 0.70) < 0.01, name
        assert abs(shares["test"] - 0.15) < 0.01, name
    keys = corpus["text"].map(datamod.normalise_for_dedup)
    assert keys.is_unique
    crypto = corpus[corpus["dataset"] == "cryptolin"]
    # by date: every test headline is at least as recent as every training headline
    assert (
        crypto.loc[crypto["split"] == "test", "date"].min()
        >= crypto.loc[crypto["split"] == "train", "date"].max()
    )


def test_split_is_reproducible() -> None:
    a = datamod.load_corpus(datasets=["financial_phrasebank"], seed=13)
    b = datamod.load_corpus(datasets=["financial_phrasebank"], seed=13)
    assert a["split"].tolist() == b["split"].tolist()
    assert datamod.evaluation_fingerprint(a[a["split"] == "test"]) == datamod.evaluation_fingerprint(
        b[b["split"] == "test"]
    )
