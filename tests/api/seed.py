"""Realistic view data written with the shared writer helpers (tests, dashboard e2e, benchmark)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import (
    Alert,
    AlertSeverity,
    DataQualityReport,
    PriceTick,
    ScoredPost,
    SentimentLabel,
    Source,
    TrendWindow,
    WindowSize,
    content_hash,
)
from schemas.redis_keys import WINDOW_SECONDS
from views import RedisViewWriter

COINS: dict[str, dict[str, float]] = {
    # coin: base price, sentiment bias, volume, z-score
    "bitcoin": {"price": 91_000.0, "bias": 0.35, "volume": 120, "z": 2.4},
    "ethereum": {"price": 3_100.0, "bias": -0.25, "volume": 80, "z": 1.1},
    "solana": {"price": 140.0, "bias": 0.1, "volume": 40, "z": 3.3},
}
LEAD_LAG: dict[str, tuple[int, float]] = {
    # coin: (lead/lag in windows, correlation at it); solana has too little history (null)
    "bitcoin": (2, 0.41),
    "ethereum": (-1, -0.33),
}
POST_TEXTS = [
    ("Bitcoin ETF inflows hit a record, very bullish for BTC", ["bitcoin"], SentimentLabel.POSITIVE),
    ("Ethereum gas fees spike again, users furious", ["ethereum"], SentimentLabel.NEGATIVE),
    ("Solana validators ship a new client release", ["solana"], SentimentLabel.NEUTRAL),
    ("BTC and ETH both breaking out today", ["bitcoin", "ethereum"], SentimentLabel.POSITIVE),
]


def floor_time(t: datetime, seconds: int) -> datetime:
    epoch = int(t.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def make_window(coin: str, window: WindowSize, start: datetime, i: int = 0) -> TrendWindow:
    spec = COINS[coin]
    length = timedelta(seconds=WINDOW_SECONDS[window])
    score = max(-1.0, min(1.0, spec["bias"] + 0.1 * math.sin(i)))
    pos = round(max(0.0, min(1.0, 0.4 + score / 2)), 4)
    neg = round(max(0.0, min(1.0 - pos, 0.3 - score / 3)), 4)
    price = spec["price"] * (1 + 0.002 * math.sin(i / 2))
    lag, lag_corr = LEAD_LAG.get(coin, (None, None))
    return TrendWindow(
        source_id=TrendWindow.make_source_id(coin, window.value, "all", start),
        event_time=start + length,
        ingest_time=start + length,
        coin=coin,
        window=window,
        window_start=start,
        window_end=start + length,
        volume=int(spec["volume"] + 5 * i),
        mean_score=round(score, 4),
        weighted_score=round(score, 4),
        positive_share=pos,
        neutral_share=round(1.0 - pos - neg, 4),
        negative_share=neg,
        social_dominance=round(spec["volume"] / sum(c["volume"] for c in COINS.values()), 4),
        volume_zscore=spec["z"],
        price_open=round(price * 0.999, 2),
        price_high=round(price * 1.003, 2),
        price_low=round(price * 0.997, 2),
        price_close=round(price, 2),
        price_return=round(0.001 * (1 if score > 0 else -1), 5),
        sentiment_return_corr=0.12 if lag is not None else None,
        lead_lag_windows=lag,
        lead_lag_corr=lag_corr,
    )


def seed_views(client: Any, prefix: str, *, now: datetime | None = None, points: int = 30) -> dict[str, Any]:
    """Write trends (every window size, ``points`` each), prices, posts, alerts and data-quality
    windows (two per source); return them."""
    now = now or datetime.now(UTC)
    windows: list[TrendWindow] = []
    for window in (WindowSize.ONE_MINUTE, WindowSize.FIVE_MINUTES, WindowSize.ONE_HOUR, WindowSize.ONE_DAY):
        size = WINDOW_SECONDS[window]
        last = floor_time(now, size) - timedelta(seconds=size)
        for coin in COINS:
            for i in range(points):
                windows.append(
                    make_window(coin, window, last - timedelta(seconds=size * (points - 1 - i)), i)
                )
    views = RedisViewWriter(client, prefix)
    views.add_trend_windows(windows, publish=False)
    for coin, spec in COINS.items():
        views.add_price(
            PriceTick(
                source_id=PriceTick.make_source_id(coin, now),
                event_time=now,
                ingest_time=now,
                coin=coin,
                price=spec["price"],
                change_24h_pct=1.5,
            ),
        )
    posts = []
    for i, (text, coins, label) in enumerate(POST_TEXTS):
        p_pos = 0.8 if label is SentimentLabel.POSITIVE else 0.1
        p_neg = 0.8 if label is SentimentLabel.NEGATIVE else 0.1
        post = ScoredPost(
            source_id=f"t3_seed{i}",
            event_time=now - timedelta(seconds=30 * (len(POST_TEXTS) - i)),
            ingest_time=now,
            scored_time=now,
            source=Source.REDDIT if i % 2 == 0 else Source.NEWS,
            text=text,
            original_length=len(text),
            coins=coins,
            channel="CryptoCurrency" if i % 2 == 0 else "coindesk",
            content_hash=content_hash(text),
            label=label,
            score=round(p_pos - p_neg, 4),
            confidence=0.8,
            p_negative=p_neg,
            p_neutral=round(1 - p_pos - p_neg, 4),
            p_positive=p_pos,
            model_version="seed/1",
        )
        views.add_scored_posts([post], publish=False)
        posts.append(post)
    alert = Alert(
        source_id="alert:solana:volume",
        event_time=now,
        ingest_time=now,
        kind="volume_spike",
        severity=AlertSeverity.WARNING,
        coin="solana",
        window=WindowSize.ONE_HOUR,
        message="solana mentions 3.3 standard deviations above normal",
        value=3.3,
        threshold=3.0,
    )
    views.add_alert(alert)
    rules = ("completeness", "validity", "length", "language", "uniqueness")
    thresholds = dict(zip(rules, (0.05, 0.01, 0.1, 0.05, 0.05), strict=True))
    quality = []
    for source, language in (("news", 0.02), ("reddit", 0.08)):
        for back in (2, 1):
            start = floor_time(now, 300) - timedelta(seconds=300 * back)
            shares = dict(zip(rules, (0.0, 0.0, 0.01, language, 0.0), strict=True))
            report = DataQualityReport(
                source=source,
                window_start=start,
                window_end=start + timedelta(seconds=300),
                records=400,
                shares=shares,
                thresholds=thresholds,
                breaches=["language"] if language > 0.05 else [],
                judged=True,
                quality_score=round(1 - sum(shares.values()), 6),
            )
            views.add_quality_report(report)
            quality.append(report)
    views.flush()
    return {"windows": windows, "posts": posts, "alert": alert, "quality": quality, "now": now}
