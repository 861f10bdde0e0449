"""Which scored posts are most worth a person's label: the worker's side of the review queue.

A post's priority is the sum of independent signals, each in [0, 1]:

* low confidence: ``1 - confidence`` (reason ``low_confidence`` below :data:`LOW_CONFIDENCE`);
* member disagreement: the distance between the transformer's and the linear member's
  probabilities (reason ``members_disagree`` when they pick different labels);
* coin shift: how far the latest :data:`SHIFT_WINDOW` trend window of the post's most
  shifted coin moved (``|sentiment_change|`` against :data:`SHIFT_CHANGE`,
  ``|sentiment_zscore|`` against :data:`SHIFT_ZSCORE`; reason ``coin_shift`` at 2/3);
* challenger disagreement: :data:`views.writer.REVIEW_CHALLENGER_WEIGHT`, added by the
  shadow agent's offer (reason ``challenger_disagrees``).

Only posts with at least one reason are offered, so a confident, unanimous post on a quiet
coin costs nothing in Redis. The trend windows are read with one MGET per batch for the
coins not read in the last :data:`TREND_CACHE_S` seconds; a failed read counts as no shift.
The writes themselves are one Lua call per candidate in the batch's pipeline
(:meth:`views.writer.AsyncRedisViewWriter.add_review_candidate`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from schemas.events import ScoredPost, WindowSize
from schemas.redis_keys import WINDOW_SECONDS
from stream_processors.scorer import MemberSplit
from views.writer import REVIEW_COIN_SHIFT, REVIEW_LOW_CONFIDENCE, REVIEW_MEMBERS_DISAGREE

log = structlog.get_logger(__name__)

LOW_CONFIDENCE = 0.6
"""Below this confidence a post is flagged ``low_confidence`` (three labels: 1/3 is a coin toss)."""
SHIFT_WINDOW = WindowSize.FIVE_MINUTES
"""The trend window whose latest value says a coin's sentiment "just" shifted."""
SHIFT_CHANGE = 0.5
"""``|sentiment_change|`` that counts as a full shift (signal 1.0)."""
SHIFT_ZSCORE = 3.0
"""``|sentiment_zscore|`` that counts as a full shift (signal 1.0)."""
SHIFT_FLAG = 2.0 / 3.0
"""Shift signal from which a post is flagged ``coin_shift`` (|z| >= 2 or |change| >= 1/3)."""
SHIFT_MAX_AGE_WINDOWS = 3
"""A latest window that ended more windows ago than this is old news: no shift."""
TREND_CACHE_S = 5.0
"""How long a coin's shift signal is reused before the trend window is read again."""

TrendReader = Callable[[Sequence[str]], Awaitable[Mapping[str, str | None]]]
"""Coins -> their latest :data:`SHIFT_WINDOW` trend window JSON (None where none)."""


@dataclass(frozen=True, slots=True)
class ReviewCandidate:
    """One post offered to the review queue, with its own priority (no challenger part)."""

    post: ScoredPost
    priority: float
    reasons: tuple[str, ...]
    challenger_label: str | None = None


def shift_signal(raw: str | None, now: float) -> float:
    """The shift signal in [0, 1] of one latest trend window's JSON (0 when absent or old)."""
    if not raw:
        return 0.0
    try:
        window = json.loads(raw)
        end = datetime.fromisoformat(str(window["window_end"])).timestamp()
        change = abs(float(window.get("sentiment_change") or 0.0))
        zscore = abs(float(window.get("sentiment_zscore") or 0.0))
    except (ValueError, TypeError, KeyError):
        return 0.0
    if now - end > SHIFT_MAX_AGE_WINDOWS * WINDOW_SECONDS[SHIFT_WINDOW]:
        return 0.0
    return min(1.0, max(change / SHIFT_CHANGE, zscore / SHIFT_ZSCORE))


class CoinShifts:
    """Per-coin shift signals, read in one MGET per batch and cached a few seconds."""

    def __init__(self, read: TrendReader, *, cache_s: float = TREND_CACHE_S) -> None:
        self._read = read
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, float]] = {}  # coin -> (signal, read at, monotonic)
        self._failed_at = -1e9

    async def signals(self, coins: Iterable[str]) -> dict[str, float]:
        """Coin -> shift signal for ``coins``; a Redis failure counts as no shift (and backs off)."""
        now = time.monotonic()
        wanted = set(coins)
        stale = sorted(c for c in wanted if now - self._cache.get(c, (0.0, -1e9))[1] > self.cache_s)
        if stale and now - self._failed_at > self.cache_s:
            try:
                raw = await self._read(stale)
            except Exception as exc:  # best effort: the queue is a hint, never a reason to stall
                self._failed_at = now
                log.warning("trend read for the review queue failed", error=str(exc))
            else:
                wall = time.time()
                for coin in stale:
                    self._cache[coin] = (shift_signal(raw.get(coin), wall), now)
        if len(self._cache) > 10_000:  # coins come from a catalog; this only guards a runaway
            self._cache.clear()
        return {coin: self._cache.get(coin, (0.0, now))[0] for coin in wanted}


class ReviewRanker:
    """Turns scored posts into :class:`ReviewCandidate` s (see the module doc for the formula)."""

    def __init__(self, shifts: CoinShifts) -> None:
        self.shifts = shifts

    async def rank(
        self,
        posts: Sequence[ScoredPost],
        members: Mapping[str, MemberSplit] | None = None,
        *,
        challenger: Mapping[str, str] | None = None,
    ) -> list[ReviewCandidate]:
        """The candidates among ``posts``: those with at least one reason.

        ``members``: source id -> the ensemble members' split (score agent); ``challenger``:
        source id -> the challenger's dissenting label (shadow agent).
        """
        if not posts:
            return []
        members = members or {}
        challenger = challenger or {}
        shifts = await self.shifts.signals({coin for post in posts for coin in post.coins})
        out: list[ReviewCandidate] = []
        for post in posts:
            reasons: list[str] = []
            priority = 1.0 - post.confidence
            if post.confidence < LOW_CONFIDENCE:
                reasons.append(REVIEW_LOW_CONFIDENCE)
            split = members.get(post.source_id)
            if split is not None:
                priority += split.distance
                if not split.agree:
                    reasons.append(REVIEW_MEMBERS_DISAGREE)
            shift = max((shifts.get(coin, 0.0) for coin in post.coins), default=0.0)
            priority += shift
            if shift >= SHIFT_FLAG:
                reasons.append(REVIEW_COIN_SHIFT)
            label = challenger.get(post.source_id)
            if reasons or label is not None:
                out.append(ReviewCandidate(post, round(priority, 6), tuple(reasons), label))
        return out
