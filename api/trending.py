"""The trending ranking: which coins deserve attention now, also while history is short.

A coin's ``trend_score`` adds three parts of its latest window:

* **unusual volume**: the volume z-score against the series' trailing windows, clipped to
  [-3, 5] so one freak window cannot bury everything else; when the series is too young
  for a z-score (None on a fresh start) this part is 0, not a guess;
* **sentiment change**: 2 x |weighted score minus the trailing mean| (0 to 4): a coin whose
  mood swings is news whatever its volume;
* **mentions**: 0.5 x ln(1 + volume): attention itself, with diminishing returns, so on a
  fresh start (every z-score 0) bitcoin with 28 mentions outranks a coin with one.

Coins with fewer than ``min_mentions`` mentions in the window rank after every coin with
enough: a z-score or a mood swing on two posts is noise. Ties go to the larger volume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from schemas.events import TrendWindow

MIN_MENTIONS = 5
"""Default floor: below it a coin's window is too thin to rank on its statistics."""
ZSCORE_RANGE = (-3.0, 5.0)
SENTIMENT_WEIGHT = 2.0
MENTIONS_WEIGHT = 0.5


@dataclass(frozen=True)
class Ranked:
    coin: str
    score: float
    enough_mentions: bool
    window: TrendWindow


def trend_score(window: TrendWindow) -> float:
    """The documented ranking score of one window (see the module docstring)."""
    low, high = ZSCORE_RANGE
    z = min(max(window.volume_zscore or 0.0, low), high)
    shift = abs(window.sentiment_change or 0.0)
    return z + SENTIMENT_WEIGHT * shift + MENTIONS_WEIGHT * math.log1p(window.volume)


def rank(windows: Iterable[TrendWindow], min_mentions: int = MIN_MENTIONS) -> list[Ranked]:
    """Every coin's latest window, most worth attention first."""
    ranked = [Ranked(w.coin, trend_score(w), w.volume >= min_mentions, w) for w in windows]
    ranked.sort(key=lambda r: (r.enough_mentions, r.score, r.window.volume), reverse=True)
    return ranked
