"""Latest scored posts, alerts, data quality and the service info the dashboard header shows."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import COIN_ID_PATTERN, StateDep
from api.models import (
    AlertsResponse,
    Freshness,
    InfoResponse,
    ModelStatus,
    PostsResponse,
    QualityHistoryResponse,
    QualityResponse,
)
from api.openapi import AUTHED, errors
from api.problems import ProblemError
from api.state import AppState
from schemas.events import WindowSize

router = APIRouter(tags=["feed"])


@router.get(
    "/posts/latest",
    response_model=PostsResponse,
    summary="Newest scored posts",
    responses=errors(*AUTHED, 422),
)
async def latest_posts(
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    coin: Annotated[
        str | None, Query(pattern=COIN_ID_PATTERN, description="only posts mentioning it")
    ] = None,
) -> PostsResponse:
    posts = await state.store.posts(500 if coin else limit)
    if coin:
        posts = [p for p in posts if coin in p.coins][:limit]
    return PostsResponse(count=len(posts), posts=posts)


@router.get("/alerts", response_model=AlertsResponse, summary="Newest alerts", responses=errors(*AUTHED, 422))
async def alerts(state: StateDep, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> AlertsResponse:
    items = await state.store.alerts(limit)
    return AlertsResponse(count=len(items), alerts=items)


@router.get(
    "/quality",
    response_model=QualityResponse,
    summary="Data quality of each source (latest closed window)",
    responses=errors(*AUTHED),
)
async def quality(state: StateDep) -> QualityResponse:
    """Failure share of each validation rule (completeness, validity, length, language,
    uniqueness) per source, judged by the stream worker once a window closes."""
    reports = await state.store.quality_latest()
    return QualityResponse(count=len(reports), sources=reports)


@router.get(
    "/quality/{source}",
    response_model=QualityHistoryResponse,
    summary="One source's data-quality windows, newest first",
    responses=errors(*AUTHED, 404, 422),
)
async def quality_history(
    state: StateDep,
    source: Annotated[str, Path(pattern=r"^[\w.<>-]{1,128}$", examples=["reddit"])],
    limit: Annotated[int, Query(ge=1, le=288)] = 48,
) -> QualityHistoryResponse:
    if source not in await state.store.quality_sources():
        raise ProblemError(
            404, "Unknown source", f"no data-quality report for source {source!r}", slug="unknown-source"
        )
    windows = await state.store.quality_history(source, limit)
    return QualityHistoryResponse(source=source, count=len(windows), windows=windows)


def model_status(state: AppState) -> ModelStatus:
    m = state.model
    return ModelStatus(loaded=m.loaded, version=m.version, uri=m.uri, error=m.error)


@router.get(
    "/info",
    response_model=InfoResponse,
    summary="Model version, data freshness and coverage",
    responses=errors(*AUTHED),
)
async def info(state: StateDep) -> InfoResponse:
    from core.version import __version__

    coins = await state.store.coins()
    latest = [w for w in await state.store.latest_many(coins, WindowSize.ONE_MINUTE) if w is not None]
    if not latest:
        latest = [w for w in await state.store.latest_many(coins, WindowSize.FIVE_MINUTES) if w is not None]
    posts = await state.store.posts(1)
    now = time.time()
    window_end = max((w.window_end for w in latest), default=None)
    # Freshness is when a view last changed (newest ingest time), not when its window
    # ends: the current window ends in the future.
    updated = max((w.ingest_time for w in latest), default=None)
    post_time = posts[0].event_time if posts else None
    return InfoResponse(
        version=__version__,
        model=model_status(state),
        freshness=Freshness(
            latest_window_end=window_end,
            latest_post_time=post_time,
            window_age_s=round(now - updated.timestamp(), 3) if updated else None,
            post_age_s=round(now - post_time.timestamp(), 3) if post_time else None,
        ),
        coins=len(coins),
        auth_enabled=state.settings.api.auth_enabled,
        windows=list(WindowSize),
    )
