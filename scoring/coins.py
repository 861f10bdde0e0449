"""Which coins a text mentions, as canonical CoinGecko-style ids.

Tickers collide with ordinary words ("link", "one", "near"), with other languages
(Spanish "sol") and with substrings ("eth" in "ethics"), so matching is rule based:

* a ``$CASHTAG`` of a catalog symbol always counts;
* an unambiguous symbol (BTC, ETH, XRP) counts as a whole word in any case;
* an ambiguous symbol (SOL, LINK, DOT) counts when written in UPPERCASE in a text that is
  not shouting, or in lower case right next to a market word ("sol price", "link pumps");
* a cashtag-only symbol (ONE, OP, NOT) counts only as a cashtag;
* a coin name counts as a whole phrase in any case, except ambiguous names
  ("Avalanche", "Cosmos", "Polygon") which need a capital letter and crypto context.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_CATALOG = Path(__file__).with_name("coins.json")

# Words that make a nearby lowercase ambiguous ticker a coin ("sol price", "buy link").
_MARKET = """
    price prices token tokens coin coins pump pumps pumping pumped dump dumps dumping dumped bullish bearish
    staking stake staked holders hodl hodling chart charts breakout rally rallies ath moon mooning usd usdt
    usdc crypto airdrop mainnet testnet ecosystem network defi long short longs shorts bags bag buy buying
    sell selling sold bought wallet whale whales altcoin altcoins etf futures perp perps market cap mcap
    trading traded swap dex tvl validator validators"""
MARKET_WORDS = frozenset(_MARKET.split())
# Words that make the whole text about crypto (needed for ambiguous names).
_CRYPTO = """
    crypto cryptocurrency cryptocurrencies coin coins token tokens blockchain defi nft nfts altcoin altcoins
    hodl staking wallet mainnet testnet airdrop web3 dao dapp dapps dex validator validators layer-1 layer-2
    l1 l2 protocol bitcoin btc ethereum eth memecoin memecoins stablecoin stablecoins exchange tvl
    onchain on-chain"""
CRYPTO_WORDS = frozenset(_CRYPTO.split())

_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9_$])(\$?)([A-Za-z0-9][A-Za-z0-9]*)(?![A-Za-z0-9_])")
_WORD_RE = re.compile(r"[A-Za-z0-9$][A-Za-z0-9\-]*")
ASCII_LETTER_RE = re.compile(r"[A-Za-z]")
_ASCII_UPPER_RE = re.compile(r"[A-Z]")


def letter_counts(text: str) -> tuple[int, int]:
    """(letters, upper-case letters) as ``str.isalpha`` / ``str.isupper`` count them.

    Most posts are ASCII: two compiled regexes count them ~10x faster than a Python loop
    over the characters; other text takes the loop (Unicode letter rules)."""
    if text.isascii():
        return len(ASCII_LETTER_RE.findall(text)), len(_ASCII_UPPER_RE.findall(text))
    letters = [ch for ch in text if ch.isalpha()]
    return len(letters), sum(ch.isupper() for ch in letters)


@dataclass(frozen=True)
class Coin:
    """One catalog entry."""

    id: str
    symbols: tuple[str, ...]
    names: tuple[str, ...]
    ambiguous_symbol: bool = False
    cashtag_only: bool = False
    ambiguous_name: bool = False


@dataclass
class CoinCatalog:
    """Symbol and name index over the shipped catalog; ``tag`` applies the ambiguity rules."""

    coins: tuple[Coin, ...]
    _by_symbol: dict[str, Coin] = field(init=False, repr=False)
    _name_pattern: re.Pattern[str] | None = field(init=False, repr=False)
    _by_name: dict[str, Coin] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_symbol = {}
        for coin in self.coins:
            for sym in coin.symbols:
                # First (higher market cap) entry wins a symbol clash.
                self._by_symbol.setdefault(sym.upper(), coin)
        # One alternation over every name, longest first, so one scan finds them all and at any
        # position the longest name wins ("Bitcoin Cash" before "Bitcoin"); ~10x faster than
        # one pattern per name.
        self._by_name = {}
        for coin in self.coins:
            for name in coin.names:
                self._by_name.setdefault(_name_key(name), coin)
        names = sorted(self._by_name, key=lambda n: (-len(n), n))
        self._name_pattern = (
            re.compile(
                r"(?<![A-Za-z0-9])(?:"
                + "|".join(r"\s+".join(re.escape(p) for p in name.split()) for name in names)
                + r")(?![A-Za-z0-9])",
                re.IGNORECASE,
            )
            if names
            else None
        )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CoinCatalog:
        coins = tuple(
            Coin(
                id=c["id"],
                symbols=tuple(c["symbols"]),
                names=tuple(c["names"]),
                ambiguous_symbol=bool(c.get("ambiguous_symbol", False)),
                cashtag_only=bool(c.get("cashtag_only", False)),
                ambiguous_name=bool(c.get("ambiguous_name", False)),
            )
            for c in raw["coins"]
        )
        return cls(coins=coins)

    @classmethod
    def load(cls, path: Path) -> CoinCatalog:
        return cls.from_dict(json.loads(Path(path).read_text("utf-8")))

    @classmethod
    def default(cls) -> CoinCatalog:
        """The catalog shipped in the package (cached: it is immutable)."""
        return _default_catalog()

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.coins]

    def by_symbol(self, symbol: str) -> Coin | None:
        """Case-insensitive symbol lookup, with or without a leading ``$``."""
        return self._by_symbol.get(symbol.lstrip("$").upper())

    def by_id(self, coin_id: str) -> Coin | None:
        return next((c for c in self.coins if c.id == coin_id), None)

    def tag(self, text: str) -> list[str]:
        """Canonical ids of the coins ``text`` mentions, in order of first mention, no repeats."""
        if not text:
            return []
        found: list[tuple[int, str]] = []
        tokens = list(_TOKEN_RE.finditer(text))
        # Both contexts are looked at only when an ambiguous ticker or name needs them.
        shouting: bool | None = None
        unambiguous_hit = False
        for idx, match in enumerate(tokens):
            cashtag, word = match.group(1) == "$", match.group(2)
            coin = self._by_symbol.get(word.upper())
            if coin is None:
                continue
            if coin.ambiguous_symbol and shouting is None:
                shouting = self._shouting(tokens)
            if self._symbol_counts(coin, word, cashtag, bool(shouting), tokens, idx):
                found.append((match.start(), coin.id))
                unambiguous_hit = unambiguous_hit or not coin.ambiguous_symbol or cashtag
        if self._name_pattern is not None:
            crypto_context: bool | None = None
            for match in self._name_pattern.finditer(text):
                coin = self._by_name[_name_key(match.group(0))]
                if coin.ambiguous_name:
                    if crypto_context is None:
                        crypto_context = unambiguous_hit or "$" in text or _mentions_crypto(text)
                    if not (match.group(0)[0].isupper() and crypto_context):
                        continue
                found.append((match.start(), coin.id))
        return _ordered_unique(cid for _, cid in sorted(found))

    def _shouting(self, tokens: list[re.Match[str]]) -> bool:
        """Whether the ordinary words (not tickers) are mostly upper case: then UPPERCASE
        proves nothing."""
        letters, upper = letter_counts(
            "".join(m.group(2) for m in tokens if m.group(2).upper() not in self._by_symbol)
        )
        return letters >= 6 and upper / letters > 0.6

    @staticmethod
    def _symbol_counts(
        coin: Coin, word: str, cashtag: bool, shouting: bool, tokens: list[re.Match[str]], idx: int
    ) -> bool:
        if cashtag:
            return True
        if coin.cashtag_only:
            return False
        if not coin.ambiguous_symbol:
            return True
        if word.isupper() and len(word) >= 2 and not shouting:
            return True
        neighbours = [
            tokens[j].group(2).lower() for j in range(max(0, idx - 2), min(len(tokens), idx + 3)) if j != idx
        ]
        return any(n in MARKET_WORDS for n in neighbours)


def _mentions_crypto(text: str) -> bool:
    """Whether ``text`` has a crypto word (``crypto``, ``token``, ``exchange``, ...)."""
    return any(w.lower() in CRYPTO_WORDS for w in _WORD_RE.findall(text))


def _name_key(name: str) -> str:
    """Lookup key of a coin name as matched in text: case- and whitespace-insensitive."""
    return " ".join(name.lower().split())


def _ordered_unique(ids: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for cid in ids:
        seen.setdefault(cid, None)
    return list(seen)


@lru_cache(maxsize=1)
def _default_catalog() -> CoinCatalog:
    return CoinCatalog.load(DEFAULT_CATALOG)
