from __future__ import annotations

import pytest

from scoring.lexicon import CryptoLexicon, plain_vader_features

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def lexicon() -> CryptoLexicon:
    return CryptoLexicon()


@pytest.mark.parametrize(
    "text", ["HODL 🚀🚀", "BTC to the moon", "new all-time high for ETH", "so bullish 📈"]
)
def test_crypto_positive(lexicon: CryptoLexicon, text: str) -> None:
    assert lexicon.polarity(text)["compound"] > 0.05


@pytest.mark.parametrize("text", ["got rekt", "another rug pull", "FUD everywhere 📉", "bagholders crying"])
def test_crypto_negative(lexicon: CryptoLexicon, text: str) -> None:
    assert lexicon.polarity(text)["compound"] < -0.05


def test_plain_vader_misses_slang_that_the_crypto_lexicon_reads() -> None:
    texts = ["rekt", "HODL 🚀"]
    assert abs(plain_vader_features(texts)[0, 3]) < 0.05
    assert CryptoLexicon().features(texts)[0, 3] < -0.05


def test_roundtrip(lexicon: CryptoLexicon, tmp_path) -> None:
    path = tmp_path / "lexicon.json"
    lexicon.save(path)
    again = CryptoLexicon.load(path)
    assert again.polarity("rug pull 🚀") == lexicon.polarity("rug pull 🚀")


def test_features_shape_and_labels(lexicon: CryptoLexicon) -> None:
    feats = lexicon.features(["great", "terrible", "a table"])
    assert feats.shape == (3, 4)
    assert list(CryptoLexicon.to_label_ids(feats)) == [2, 0, 1]
