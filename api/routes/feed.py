"""Latest scored posts, alerts, data quality and the service info the dashboard header shows."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from api.deps import COIN_ID_PATTERN, StateDep
from api.models import (
    AlertsResponse,
    ExplainedSpan,
    Freshness,
    InfoResponse,
    ModelStatus,
    PostExplanation,
    PostsResponse,
    QualityHistoryResponse,
    QualityResponse,
)
from api.openapi import AUTHED, errors
from api.problems import ProblemError
from api.state import AppState
from schemas.events import ScoredPost, WindowSize
from scoring.explain import explain_text

router = APIRouter(tags=["feed"])
log = structlog.get_logger(__name__)

FEED_EXPLAIN_MAX = 10
"""Posts a feed request may have explained: each new one costs about two model passes per word."""
_CACHE_SIZE = 4096


class ExplanationCache:
    """Explanations by (model version, post id, content hash), least recently used out.

    A post never changes and the serving model changes rarely, so a dashboard that refreshes
    the feed every few seconds pays the occlusion passes once per new post, not per refresh.
    """

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str, str], PostExplanation] = OrderedDict()
        self._lock = threading.Lock()  # filled from the thread pool

    def get(self, key: tuple[str, str, str]) -> PostExplanation | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: tuple[str, str, str], value: PostExplanation) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


EXPLANATIONS = ExplanationCache()


def explain_posts(runtime: Any, posts: Sequence[ScoredPost]) -> list[PostExplanation]:
    """Occlusion explanations of ``posts`` by the serving runtime, cached (runs in a worker thread)."""
    version = str(runtime.model_version)
    out = []
    for post in posts:
        key = (version, post.source_id, post.content_hash)
        found = EXPLANATIONS.get(key)
        if found is None:
            explanation = explain_text(post.text, runtime.ensemble_proba)
            found = PostExplanation(
                source_id=post.source_id,
                label=explanation.label,
                spans=[
                    ExplainedSpan(text=c.text, start=c.start, end=c.end, weight=c.weight)
                    for c in explanation.contributions
                ],
            )
            EXPLANATIONS.put(key, found)
        out.append(found)
    return out


@router.get(
    "/posts/latest",
    response_model=PostsResponse,
    summary="Newest scored posts, optionally with the words that drove the first ones' verdicts",
    responses=errors(*AUTHED, 422),
)
async def latest_posts(
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    coin: Annotated[
        str | None, Query(pattern=COIN_ID_PATTERN, description="only posts mentioning it")
    ] = None,
    explain: Annotated[
        int,
        Query(
            ge=0,
            le=FEED_EXPLAIN_MAX,
            description=f"explain the first N posts (0 to {FEED_EXPLAIN_MAX}) with the serving model",
        ),
    ] = 0,
) -> PostsResponse:
    """The feed stays a Redis read: explanations are opt-in, limited to the first
    ``explain`` posts, computed off the event loop with the API's own runtime (the model
    that ``POST /v1/score?explain=true`` uses) and cached per model version and post, so a
    refreshing dashboard pays about two model passes per word once per new post. Without a
    loaded in-process model the posts still come, with ``explain_error`` saying why."""
    posts = await state.store.posts(500 if coin else limit)
    if coin:
        posts = [p for p in posts if coin in p.coins][:limit]
    if explain == 0 or not posts:
        return PostsResponse(count=len(posts), posts=posts)
    runtime = state.model.runtime
    if runtime is None:
        reason = f"the scoring model {state.model.uri} is not loaded: {state.model.error}"
        return PostsResponse(count=len(posts), posts=posts, explain_error=reason)
    if not hasattr(runtime, "ensemble_proba"):
        reason = "this API's model runs out of process and cannot explain its verdicts"
        return PostsResponse(count=len(posts), posts=posts, explain_error=reason)
    try:
        explanations = await run_in_threadpool(explain_posts, runtime, posts[:explain])
    except Exception as exc:  # a failing model pass must not take the feed down with it
        log.warning("feed_explain_failed", error=str(exc), posts=min(explain, len(posts)))
        return PostsResponse(count=len(posts), posts=posts, explain_error=f"explanation failed: {exc}")
    return PostsResponse(
        count=len(posts),
        posts=posts,
        explanations=explanations,
        explained_by=str(runtime.model_version),
    )


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
