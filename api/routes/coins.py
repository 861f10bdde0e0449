"""Coins, sentiment, time series, trending and market mood: reads of the Redis views."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BeforeValidator

from api import trending as trending_ranking
from api.deps import CoinPath, StateDep, TrackedCoin, WindowQuery
from api.market import coin_prices, market_mood
from api.models import (
    CoinsResponse,
    CoinSummary,
    MarketResponse,
    SentimentResponse,
    TimeseriesResponse,
    TrendingItem,
    TrendingResponse,
)
from api.openapi import AUTHED, errors
from api.problems import ProblemError
from schemas.events import WindowSize

router = APIRouter(tags=["sentiment"])


def _json(model: Any) -> Response:
    """Serialize once, skipping FastAPI's re-validation of an already valid model (hot path)."""
    return Response(model.model_dump_json(by_alias=True), media_type="application/json")


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: Any) -> Any:
    """Only RFC 3339 date-times with a zone (pydantic alone would take '0.5' as epoch seconds)."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("expected an ISO-8601 date-time with a timezone, e.g. 2026-11-28T18:00:00Z")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339)]


@router.get(
    "/coins",
    response_model=CoinsResponse,
    summary="Tracked coins with their latest sentiment",
    responses=errors(*AUTHED, 422),
)
async def list_coins(state: StateDep, window: WindowQuery = WindowSize.FIVE_MINUTES) -> Response:
    coins = await state.store.coins()
    latest = await state.store.latest_many(coins, window)
    prices = await state.store.prices(coins)
    return _json(
        CoinsResponse(
            window=window,
            count=len(coins),
            coins=[
                CoinSummary(coin=c, sentiment=t, price=p)
                for c, t, p in zip(coins, latest, prices, strict=True)
            ],
        )
    )


@router.get(
    "/coins/{coin}/sentiment",
    response_model=SentimentResponse,
    summary="Latest sentiment window of one coin",
    responses=errors(*AUTHED, 404, 422),
)
async def coin_sentiment(
    coin: CoinPath, state: StateDep, window: WindowQuery = WindowSize.FIVE_MINUTES
) -> Response:
    tracked, latest, price = await state.store.sentiment(coin, window)
    if not tracked:
        raise ProblemError(404, "Unknown coin", f"coin {coin!r} is not tracked", slug="unknown-coin")
    if latest is None:
        raise ProblemError(404, "No data", f"no {window.value} window for {coin!r} yet", slug="no-data")
    return _json(
        SentimentResponse(
            coin=coin,
            window=window,
            latest=latest,
            price=price,
            price_return=latest.price_return,
            age_s=round(max(0.0, time.time() - latest.window_end.timestamp()), 3),
        )
    )


@router.get(
    "/coins/{coin}/timeseries",
    response_model=TimeseriesResponse,
    response_model_by_alias=True,
    summary="Sentiment windows of one coin over time",
    responses=errors(*AUTHED, 404, 422),
)
async def coin_timeseries(
    coin: TrackedCoin,
    state: StateDep,
    window: WindowQuery = WindowSize.FIVE_MINUTES,
    from_: Annotated[
        Timestamp | None, Query(alias="from", description="earliest window_start (ISO-8601 with zone)")
    ] = None,
    to: Annotated[Timestamp | None, Query(description="latest window_start (ISO-8601 with zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="at most this many newest windows")] = 500,
) -> Response:
    for name, value in (("from", from_), ("to", to)):
        if value is not None and value.tzinfo is None:
            raise ProblemError(
                422, "Invalid request", f"{name}: timestamp needs a timezone", slug="validation"
            )
    if from_ and to and from_ > to:
        raise ProblemError(422, "Invalid request", "from must not be after to", slug="validation")
    points = await state.store.timeseries(coin, window, from_, to, limit)
    return _json(
        TimeseriesResponse.model_validate(
            {"coin": coin, "window": window, "from": from_, "to": to, "count": len(points), "points": points}
        )
    )


@router.get(
    "/trending",
    response_model=TrendingResponse,
    summary="Coins worth attention now: unusual volume, sentiment change and mentions combined",
    description=trending_ranking.__doc__,
    responses=errors(*AUTHED, 422),
)
async def trending(
    state: StateDep,
    window: WindowQuery = WindowSize.ONE_HOUR,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    min_mentions: Annotated[
        int, Query(ge=0, le=1_000_000, description="fewer mentions rank after every coin with enough")
    ] = trending_ranking.MIN_MENTIONS,
) -> Response:
    ranked = trending_ranking.rank(await state.store.latest_all(window), min_mentions)[:limit]
    items = [
        TrendingItem(
            rank=i + 1,
            coin=r.coin,
            trend_score=round(r.score, 6),
            enough_mentions=r.enough_mentions,
            volume_zscore=r.window.volume_zscore,
            sentiment_change=r.window.sentiment_change,
            volume=r.window.volume,
            mean_score=r.window.mean_score,
            weighted_score=r.window.weighted_score,
            window_start=r.window.window_start,
        )
        for i, r in enumerate(ranked)
    ]
    return _json(TrendingResponse(window=window, count=len(items), items=items))


@router.get(
    "/market",
    response_model=MarketResponse,
    summary="Overall market mood index (0-100) with its parts, and every coin's latest price",
    responses=errors(*AUTHED, 422),
)
async def market(state: StateDep, window: WindowQuery = WindowSize.ONE_HOUR) -> MarketResponse:
    windows = await state.store.latest_all(window)
    coins = await state.store.coins()
    prices = coin_prices(coins, await state.store.prices(coins), windows)
    return market_mood(window, windows, prices)
