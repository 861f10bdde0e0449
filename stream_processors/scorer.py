"""Micro-batch scoring, independent of faust so it is unit-testable.

The model itself lives in a :class:`scoring.holder.ModelHolder` (hot swap, and the
runtime in a child process when ``stream.scoring_process``). The score agent takes
``holder.current`` once per micro-batch and hands it to :func:`score_batch`, so a batch
is scored by exactly one model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.events import CleanPost, ScoredPost, SentimentLabel, utc_now
from scoring.holder import ScoringRuntime


@dataclass(frozen=True, slots=True)
class MemberSplit:
    """How far the ensemble's members disagreed on one post (a review-queue signal that the
    scored record does not carry): their probability distance and whether their labels match."""

    distance: float
    agree: bool


@dataclass(frozen=True)
class BatchResult:
    """Scored posts plus (post, reason) pairs the model refused, for the dead-letter topic.

    ``members`` maps a scored post's source id to its :class:`MemberSplit`, for runtimes
    that report one (:class:`scoring.runtime.TextScore`).
    """

    scored: list[ScoredPost]
    failed: list[tuple[CleanPost, str]]
    model_version: str
    inference_s: float
    members: dict[str, MemberSplit] = field(default_factory=dict)


def score_batch(runtime: ScoringRuntime, posts: Sequence[CleanPost]) -> BatchResult:
    """Score ``posts`` with one runtime call; every post ends in ``scored`` or ``failed``.

    A verdict that does not make a valid ScoredPost fails its post alone; only a runtime
    that fails the whole call raises.
    """
    started = time.perf_counter()
    results = list(runtime.score([p.text for p in posts])) if posts else []
    inference_s = time.perf_counter() - started
    if len(results) != len(posts):
        raise RuntimeError(f"runtime returned {len(results)} scores for {len(posts)} texts")
    scored: list[ScoredPost] = []
    failed: list[tuple[CleanPost, str]] = []
    members: dict[str, MemberSplit] = {}
    now = utc_now()
    for post, result in zip(posts, results, strict=True):
        if result.error is not None or result.label is None:
            failed.append((post, result.error or "no label"))
            continue
        try:
            scored.append(
                ScoredPost(
                    **post.model_dump(),
                    label=SentimentLabel(str(getattr(result.label, "value", result.label))),
                    score=_clip(result.score, -1.0, 1.0),
                    confidence=_clip(result.confidence, 0.0, 1.0),
                    p_negative=_clip(result.p_negative, 0.0, 1.0),
                    p_neutral=_clip(result.p_neutral, 0.0, 1.0),
                    p_positive=_clip(result.p_positive, 0.0, 1.0),
                    model_version=result.model_version,
                    scored_time=now,
                )
            )
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            failed.append((post, f"invalid verdict: {type(exc).__name__}: {exc}"))
            continue
        distance = getattr(result, "member_disagreement", None)
        agree = getattr(result, "members_agree", None)
        if distance is not None and agree is not None:
            members[post.source_id] = MemberSplit(_clip(distance, 0.0, 1.0), bool(agree))
    return BatchResult(scored, failed, runtime.model_version, inference_s, members)


def _clip(value: float | None, low: float, high: float) -> float:
    return min(high, max(low, float(value or 0.0)))
