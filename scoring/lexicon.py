"""VADER extended with crypto slang, phrases and emoji: the lexicon member of the ensemble.

VADER knows general English sentiment but reads "HODL", "rekt", "rug pull" or "🚀" as
neutral. We keep VADER's rules (negation, boosters, capitals) and add a crypto lexicon
on top. Multi-word phrases and emoji are rewritten to single tokens first because VADER
scores one whitespace token at a time. The additions are saved in the model artifact
(``lexicon.json``) so serving uses exactly the lexicon the combiner was fitted with.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

# Valences on VADER's -4..+4 scale.
CRYPTO_WORDS: dict[str, float] = {
    "hodl": 1.5,
    "hodling": 1.5,
    "hodler": 1.2,
    "hodlers": 1.2,
    "moon": 2.0,
    "mooning": 2.6,
    "moons": 1.8,
    "rekt": -2.8,
    "fud": -1.8,
    "rugpull": -3.2,
    "rugged": -3.0,
    "rug": -2.2,
    "ath": 2.0,
    "aths": 2.0,
    "bagholder": -1.8,
    "bagholders": -1.8,
    "bagholding": -1.8,
    "bullish": 2.2,
    "bearish": -2.2,
    "bull": 1.2,
    "bulls": 1.0,
    "bear": -1.0,
    "bears": -0.8,
    "pump": 1.2,
    "pumping": 1.6,
    "pumped": 1.4,
    "dump": -1.8,
    "dumping": -2.0,
    "dumped": -1.8,
    "scam": -2.8,
    "scammer": -2.8,
    "scammers": -2.8,
    "ponzi": -2.8,
    "hack": -2.5,
    "hacked": -2.8,
    "hacker": -2.0,
    "hackers": -2.0,
    "exploit": -2.4,
    "exploited": -2.6,
    "drained": -2.4,
    "wagmi": 2.0,
    "ngmi": -2.0,
    "lambo": 1.8,
    "btfd": 1.2,
    "capitulation": -2.0,
    "liquidated": -2.5,
    "liquidation": -1.8,
    "liquidations": -1.8,
    "rally": 1.8,
    "rallies": 1.8,
    "rallied": 1.8,
    "surge": 1.8,
    "surges": 1.8,
    "surged": 1.8,
    "soar": 2.0,
    "soars": 2.0,
    "soared": 2.0,
    "jumps": 1.4,
    "jumped": 1.4,
    "climbs": 1.2,
    "gains": 1.5,
    "gained": 1.3,
    "plunge": -2.2,
    "plunges": -2.2,
    "plunged": -2.2,
    "crash": -2.5,
    "crashes": -2.5,
    "crashed": -2.5,
    "tank": -1.6,
    "tanks": -2.0,
    "tanked": -2.0,
    "slump": -2.0,
    "slumps": -2.0,
    "slumped": -2.0,
    "tumbles": -2.0,
    "tumbled": -2.0,
    "sinks": -1.6,
    "falls": -1.2,
    "fell": -1.2,
    "drops": -1.2,
    "dropped": -1.2,
    "losses": -1.5,
    "delisted": -2.0,
    "delist": -1.8,
    "delisting": -1.8,
    "insolvent": -2.8,
    "insolvency": -2.8,
    "bankruptcy": -2.8,
    "bankrupt": -2.8,
    "outflows": -1.0,
    "inflows": 1.0,
    "adoption": 1.2,
    "approval": 1.5,
    "approves": 1.5,
    "approved": 1.5,
    "rejects": -1.5,
    "lawsuit": -1.8,
    "sued": -1.8,
    "sues": -1.8,
    "ban": -1.8,
    "bans": -1.8,
    "banned": -2.0,
    "crackdown": -2.0,
    "breakout": 1.5,
    "diamondhands": 1.6,
    "paperhands": -1.0,
    "shill": -1.2,
    "shilling": -1.2,
    "shitcoin": -1.5,
    "shitcoins": -1.5,
    "bullrun": 2.2,
    "bearmarket": -1.8,
    "bullmarket": 1.8,
    "downtrend": -1.5,
    "uptrend": 1.5,
    "profit": 1.5,
    "profits": 1.5,
    "outperform": 1.5,
    "outperforms": 1.5,
    "underperform": -1.5,
    "downgrade": -1.5,
    "downgraded": -1.5,
    "upgrade": 0.8,
    "upgraded": 1.2,
    "fraud": -3.0,
    "fraudulent": -3.0,
    "selloff": -2.0,
    "sell-off": -2.0,
    "correction": -0.8,
    "recovery": 1.2,
    "recovers": 1.2,
    "rebound": 1.4,
    "rebounds": 1.4,
    "record": 0.8,
    "beats": 1.2,
    "misses": -1.2,
    "layoffs": -1.8,
    "scammy": -2.4,
    "gm": 0.8,
}

# Phrases are rewritten to one token before VADER sees the text.
CRYPTO_PHRASES: dict[str, str] = {
    "rug pull": "rugpull",
    "rug-pull": "rugpull",
    "rug pulled": "rugged",
    "to the moon": "moon",
    "all time high": "ath",
    "all-time high": "ath",
    "all-time-high": "ath",
    "diamond hands": "diamondhands",
    "paper hands": "paperhands",
    "bull run": "bullrun",
    "bear market": "bearmarket",
    "bull market": "bullmarket",
    "buy the dip": "btfd",
    "sell off": "selloff",
    "new high": "ath",
    "record high": "ath",
}

# Emoji are rewritten to private tokens that carry their crypto valence.
CRYPTO_EMOJI: dict[str, float] = {
    "🚀": 2.5,
    "🌕": 1.5,
    "🌙": 1.0,
    "📈": 2.0,
    "📉": -2.0,
    "💎": 1.2,
    "🙌": 1.0,
    "🐂": 1.5,
    "🐻": -1.5,
    "🔥": 1.5,
    "💀": -1.6,
    "🩸": -1.8,
    "😭": -2.0,
    "🤑": 1.5,
    "💰": 1.0,
    "⚠️": -1.0,
    "⚠": -1.0,
    "🧻": -1.0,
    "🤡": -1.6,
    "🟢": 1.0,
    "🔴": -1.0,
    "✅": 1.0,
    "❌": -1.2,
    "💩": -2.0,
    "🎉": 2.0,
    "😱": -1.5,
    "🤮": -2.2,
    "👎": -1.8,
    "👍": 1.8,
    "💸": -0.6,
    "🆘": -1.8,
}


def _emoji_token(index: int) -> str:
    return f"cpemoji{chr(ord('a') + index // 26)}{chr(ord('a') + index % 26)}"


class CryptoLexicon:
    """VADER with crypto additions; ``features()`` feeds the combiner, ``polarity()`` the baseline."""

    def __init__(
        self,
        words: dict[str, float] | None = None,
        phrases: dict[str, str] | None = None,
        emoji: dict[str, float] | None = None,
    ) -> None:
        self.words = dict(CRYPTO_WORDS if words is None else words)
        self.phrases = dict(CRYPTO_PHRASES if phrases is None else phrases)
        self.emoji = dict(CRYPTO_EMOJI if emoji is None else emoji)
        self._vader = SentimentIntensityAnalyzer()
        self._vader.lexicon.update({k.lower(): float(v) for k, v in self.words.items()})
        # Longest emoji first so "⚠️" wins over "⚠".
        self._emoji_tokens = {
            e: _emoji_token(i) for i, e in enumerate(sorted(self.emoji, key=len, reverse=True))
        }
        self._vader.lexicon.update({tok: float(self.emoji[e]) for e, tok in self._emoji_tokens.items()})
        if self.phrases:
            alternatives = "|".join(re.escape(p) for p in sorted(self.phrases, key=len, reverse=True))
            self._phrase_re: re.Pattern[str] | None = re.compile(
                rf"(?<![\w])({alternatives})(?![\w])", re.IGNORECASE
            )
        else:
            self._phrase_re = None

    def _rewrite(self, text: str) -> str:
        if self._phrase_re is not None:
            text = self._phrase_re.sub(lambda m: self.phrases[m.group(1).lower()], text)
        for emo, tok in self._emoji_tokens.items():
            if emo in text:
                text = text.replace(emo, f" {tok} ")
        return text

    def polarity(self, text: str) -> dict[str, float]:
        """VADER's neg/neu/pos/compound on the crypto-aware rewrite of ``text``."""
        return dict(self._vader.polarity_scores(self._rewrite(text)))

    def features(self, texts: list[str]) -> np.ndarray:
        """(n, 4) array: neg, neu, pos, compound; the combiner's lexicon inputs."""
        out = np.zeros((len(texts), 4), dtype=np.float64)
        for i, text in enumerate(texts):
            s = self.polarity(text)
            out[i] = (s["neg"], s["neu"], s["pos"], s["compound"])
        return out

    @staticmethod
    def to_label_ids(features: np.ndarray, threshold: float = 0.05) -> np.ndarray:
        """The standard VADER decision rule on the compound score (the lexicon baseline)."""
        compound = features[:, 3]
        return np.where(compound >= threshold, 2, np.where(compound <= -threshold, 0, 1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": "vaderSentiment-3.3.2",
            "words": self.words,
            "phrases": self.phrases,
            "emoji": self.emoji,
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1, sort_keys=True), "utf-8")

    @classmethod
    def load(cls, path: Path) -> CryptoLexicon:
        raw = json.loads(path.read_text("utf-8"))
        return cls(words=raw["words"], phrases=raw["phrases"], emoji=raw["emoji"])


def plain_vader_features(texts: list[str]) -> np.ndarray:
    """Unmodified VADER, for the baseline row of the model card."""
    lex = CryptoLexicon(words={}, phrases={}, emoji={})
    return lex.features(texts)
