"""The trending ranking on its own: sensible on a fresh start, led by statistics once history exists."""

from __future__ import annotations

from datetime import UTC, datetime

from api.trending import MIN_MENTIONS, rank, trend_score
from schemas.events import TrendWindow, WindowSize

START = datetime(2026, 12, 1, 12, tzinfo=UTC)


def window(coin: str, volume: int, z: float | None = None, change: float | None = None) -> TrendWindow:
    return TrendWindow(
        source_id=TrendWindow.make_source_id(coin, "1h", "all", START),
        event_time=START,
        coin=coin,
        window=WindowSize.ONE_HOUR,
        window_start=START,
        window_end=START,
        volume=volume,
        mean_score=0.1,
        weighted_score=0.1,
        positive_share=0.4,
        neutral_share=0.4,
        negative_share=0.2,
        social_dominance=0.1,
        volume_zscore=z,
        sentiment_change=change,
    )


def test_fresh_start_ranks_by_mentions_not_by_zero_zscores() -> None:
    """The bug this ranking fixes: every z-score 0, a one-mention coin ranked first."""
    ranked = rank([window("avalanche-2", 1, 0.0), window("ethereum", 9, 0.0), window("bitcoin", 28, 0.0)])
    assert [r.coin for r in ranked] == ["bitcoin", "ethereum", "avalanche-2"]
    assert not ranked[-1].enough_mentions


def test_too_young_series_counts_no_zscore_at_all() -> None:
    assert trend_score(window("bitcoin", 10, None)) == trend_score(window("bitcoin", 10, 0.0))


def test_unusual_volume_and_mood_swings_outrank_plain_size() -> None:
    steady_giant = window("bitcoin", 200, z=0.1, change=0.01)
    spiking = window("solana", 30, z=4.0, change=0.05)
    swinging = window("ripple", 25, z=0.5, change=0.9)
    ranked = [r.coin for r in rank([steady_giant, spiking, swinging])]
    assert ranked.index("solana") < ranked.index("bitcoin")
    assert ranked.index("ripple") < ranked.index("bitcoin")


def test_thin_windows_rank_after_every_coin_with_enough_mentions() -> None:
    thin_spike = window("dogecoin", MIN_MENTIONS - 1, z=5.0, change=1.5)
    ranked = rank([thin_spike, window("bitcoin", MIN_MENTIONS, z=-1.0)])
    assert [r.coin for r in ranked] == ["bitcoin", "dogecoin"]
    # The z-score is clipped: one freak window cannot outweigh everything else.
    assert trend_score(window("x", 10, z=50.0)) == trend_score(window("x", 10, z=5.0))
