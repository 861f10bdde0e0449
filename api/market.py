"""The market mood index: one 0-100 number from the latest windows of every coin.

Fear & greed style: 50 is neutral. Four parts, each mapped to 0-100 and weighted:
sentiment (volume-weighted confidence-weighted score, 50%), breadth (share of coins
with positive sentiment, 20%), momentum (mean price return, 20%) and activity (mean
volume z-score, 10%). Parts without data (no prices, no z-scores) are dropped and the
remaining weights renormalized, so the index never invents a value.

Next to the index, :func:`coin_prices` lists every tracked coin's latest price (the
``price:latest`` view the stream worker's price agent keeps from ``raw.prices``) with its
24 h change and its return over the latest window of the requested size (from the trend
window, which Spark computes from the same ticks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from api.models import CoinPrice, MarketPart, MarketResponse
from schemas.events import PriceTick, TrendWindow, WindowSize

WEIGHTS = {"sentiment": 0.5, "breadth": 0.2, "momentum": 0.2, "activity": 0.1}


def _label(index: float) -> str:
    if index < 25:
        return "extreme fear"
    if index < 45:
        return "fear"
    if index <= 55:
        return "neutral"
    if index <= 75:
        return "greed"
    return "extreme greed"


def _clip(value: float) -> float:
    return round(min(100.0, max(0.0, value)), 2)


def coin_prices(
    coins: Sequence[str], ticks: Sequence[PriceTick | None], windows: Sequence[TrendWindow]
) -> list[CoinPrice]:
    """Latest price and returns per coin; a coin with neither a tick nor a window return is left out."""
    returns = {w.coin: w.price_return for w in windows}
    out = []
    for coin, tick in zip(coins, ticks, strict=True):
        window_return = returns.get(coin)
        if tick is None and window_return is None:
            continue
        out.append(
            CoinPrice(
                coin=coin,
                price=tick.price if tick else None,
                vs_currency=tick.vs_currency if tick else None,
                as_of=tick.event_time if tick else None,
                change_24h_pct=tick.change_24h_pct if tick else None,
                window_return=window_return,
            )
        )
    return out


def market_mood(
    window: WindowSize, windows: Sequence[TrendWindow], prices: Sequence[CoinPrice] = ()
) -> MarketResponse:
    """Compute the index and its parts; no windows gives index 50 labelled 'no data'."""
    if not windows:
        return MarketResponse(
            window=window,
            index=50.0,
            label="no data",
            coins=0,
            volume=0,
            as_of=None,
            parts=[],
            prices=list(prices),
        )
    volume = sum(w.volume for w in windows)
    if volume > 0:
        score = sum(w.weighted_score * w.volume for w in windows) / volume
    else:
        score = sum(w.weighted_score for w in windows) / len(windows)
    positive = sum(1 for w in windows if w.weighted_score > 0)
    parts = [
        MarketPart(
            name="sentiment",
            value=_clip(50 * (score + 1)),
            weight=WEIGHTS["sentiment"],
            detail=f"volume-weighted score {score:.2f}",
        ),
        MarketPart(
            name="breadth",
            value=_clip(100 * positive / len(windows)),
            weight=WEIGHTS["breadth"],
            detail=f"{positive} of {len(windows)} coins positive",
        ),
    ]
    returns = [w.price_return for w in windows if w.price_return is not None]
    if returns:
        mean_return = sum(returns) / len(returns)
        # tanh squashes: +/-2% return moves the part by ~38 points.
        parts.append(
            MarketPart(
                name="momentum",
                value=_clip(50 * (1 + math.tanh(mean_return * 50))),
                weight=WEIGHTS["momentum"],
                detail=f"mean price return {mean_return * 100:.2f}%",
            )
        )
    zscores = [w.volume_zscore for w in windows if w.volume_zscore is not None]
    if zscores:
        mean_z = sum(zscores) / len(zscores)
        parts.append(
            MarketPart(
                name="activity",
                value=_clip(100 / (1 + math.exp(-mean_z))),
                weight=WEIGHTS["activity"],
                detail=f"mean volume z-score {mean_z:.2f}",
            )
        )
    total = sum(p.weight for p in parts)
    index = _clip(sum(p.value * p.weight for p in parts) / total)
    return MarketResponse(
        window=window,
        index=index,
        label=_label(index),
        coins=len(windows),
        volume=volume,
        as_of=max(w.window_start for w in windows),
        parts=parts,
        prices=list(prices),
    )
