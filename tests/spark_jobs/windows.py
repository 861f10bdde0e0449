"""Trend windows and trend-frame rows for the sink and alert tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import TrendWindow, WindowSize

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def window(
    coin: str = "bitcoin",
    *,
    size: str = "5m",
    source: str = "all",
    volume: int = 40,
    z: float | None = 4.0,
    score: float = 0.25,
    score_z: float | None = None,
    change: float | None = None,
) -> TrendWindow:
    start = T0
    return TrendWindow(
        source_id=TrendWindow.make_source_id(coin, size, source, start),
        event_time=start + timedelta(minutes=1),
        ingest_time=start + timedelta(minutes=1),
        coin=coin,
        window=WindowSize(size),
        source=source,
        window_start=start,
        window_end=start + timedelta(minutes=5),
        volume=volume,
        mean_score=0.2,
        weighted_score=score,
        positive_share=0.5,
        neutral_share=0.3,
        negative_share=0.2,
        social_dominance=0.6,
        volume_zscore=z,
        sentiment_zscore=score_z,
        sentiment_change=change,
    )


def trend_row(trend: TrendWindow) -> dict[str, Any]:
    """A trend-frame row as the streaming job holds it: times in epoch milliseconds."""
    row = trend.model_dump()
    for name in ("event_time", "ingest_time", "window_start", "window_end"):
        row[name] = int(row[name].timestamp() * 1000)
    row["window"] = trend.window.value
    return row
