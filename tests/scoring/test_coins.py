from __future__ import annotations

import pytest

from scoring.coins import CoinCatalog

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def catalog() -> CoinCatalog:
    return CoinCatalog.default()


def test_catalog_covers_top_100_with_canonical_ids(catalog: CoinCatalog) -> None:
    assert len(catalog.ids) >= 100
    assert len(set(catalog.ids)) == len(catalog.ids)
    for cid in ("bitcoin", "ethereum", "solana", "ripple", "cardano", "dogecoin", "chainlink", "polkadot"):
        assert cid in catalog.ids


def test_lookup_by_symbol(catalog: CoinCatalog) -> None:
    assert catalog.by_symbol("btc").id == "bitcoin"  # type: ignore[union-attr]
    assert catalog.by_symbol("$ETH").id == "ethereum"  # type: ignore[union-attr]
    assert catalog.by_symbol("SOL").id == "solana"  # type: ignore[union-attr]
    assert catalog.by_symbol("NOPE") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$BTC and ETH to the moon", ["bitcoin", "ethereum"]),
        ("Bitcoin and Ethereum rally", ["bitcoin", "ethereum"]),
        ("btc dumping again", ["bitcoin"]),
        ("Bitcoin Cash forks while Bitcoin holds", ["bitcoin-cash", "bitcoin"]),
        ("Ethereum Classic (ETC) hit by 51% attack", ["ethereum-classic"]),
        ("SOL is pumping", ["solana"]),
        ("$sol looks strong", ["solana"]),
        ("sol price breaks out", ["solana"]),
        ("Solana outage again", ["solana"]),
        ("LINK breaks out while DOT lags", ["chainlink", "polkadot"]),
        ("XRP lawsuit update", ["ripple"]),
        ("$ONE rallies", ["harmony"]),
        ("Avalanche crypto network grows", ["avalanche-2"]),
        ("NEAR Protocol raises funds", ["near"]),
        ("dogecoin!!! 🚀", ["dogecoin"]),
        ("SOL and $ETH", ["solana", "ethereum"]),
        ("BUY SOL NOW", ["solana"]),  # shouting, but "buy" is market context
    ],
)
def test_tags(catalog: CoinCatalog, text: str, expected: list[str]) -> None:
    assert catalog.tag(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "the ethics of technology",  # "eth" inside a word
        "Something about Ethan and methane",
        "El sol brilla hoy en la playa",  # Spanish "sol"
        "Me gusta el sol",
        "check this link for details",  # "link" as an ordinary word
        "Click the link below",
        "THIS IS THE LINK YOU NEED",  # shouting text: uppercase alone is not enough
        "I have ONE question",  # cashtag-only symbols
        "we are near the end of the dot com era",
        "an avalanche in the Alps",  # ambiguous name without crypto context
        "the cosmos is vast",
        "I love sushi and cake",
        "",
    ],
)
def test_ambiguous_words_are_not_tagged(catalog: CoinCatalog, text: str) -> None:
    assert catalog.tag(text) == []


def test_order_and_uniqueness(catalog: CoinCatalog) -> None:
    assert catalog.tag("ETH, BTC, eth again and $BTC") == ["ethereum", "bitcoin"]
