"""The FastAPI application factory: ``create_app(settings)``.

Serves the Redis materialized views under /v1 (no Kafka or Spark on the request path,
except the /v1/admin Kafka view), on-demand scoring through the shared runtime, live
updates over SSE, health and Prometheus metrics. ``uvicorn --factory api.main:app``
builds it from the process settings, validated at start-up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import structlog
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.deps import api_key_required
from api.middleware import BodyLimitMiddleware, MetricsMiddleware
from api.openapi import install_openapi
from api.problems import install_problem_handlers
from api.routes import admin, coins, feed, health, score, stream
from api.security import KeyVerifier, RateLimiter
from api.state import AppState, load_model_once
from api.store import ViewStore
from cryptopulse.core.settings import Settings
from scoring.holder import ModelHolder

log = structlog.get_logger(__name__)

DESCRIPTION = """
Real-time cryptocurrency sentiment from Reddit and news, scored by an ONNX ensemble and
aggregated by Spark into 1m/5m/1h/1d windows. Every read comes from Redis views.

* **Auth**: when enabled, send `X-API-Key: cpk_...` (or `Authorization: Bearer cpk_...`);
  keys come from `cryptopulse apikey create`.
* **Rate limits**: per key, sliding window; `429` with `Retry-After` when exceeded.
* **Errors**: `application/problem+json` (RFC 9457) with the reason in `detail`.
"""

TAGS = [
    {"name": "sentiment", "description": "coins, windows, trending and market mood"},
    {"name": "scoring", "description": "on-demand scoring with the serving model"},
    {"name": "live", "description": "Server-Sent Events from Redis pub/sub"},
    {"name": "feed", "description": "latest posts, alerts, service info"},
    {"name": "admin", "description": "read-only Kafka view"},
    {"name": "health", "description": "probes and metrics"},
]


def create_app(
    settings: Settings,
    *,
    runtime: Any = None,
    load_model: bool = True,
    redis_client: Any = None,
) -> FastAPI:
    """Build the app. ``runtime`` injects a scoring runtime (tests); otherwise it is
    loaded once at start-up from ``settings.model.uri`` unless ``load_model`` is false."""
    from cryptopulse.core.version import __version__

    client = redis_client or aioredis.Redis.from_url(
        settings.redis.dsn, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30
    )
    prefix = settings.redis.key_prefix
    if runtime is not None:
        holder = ModelHolder.holding(runtime, settings.model.uri)
    else:
        holder = ModelHolder.from_settings(settings)
        if not load_model:
            holder.error = "model loading disabled"
    state = AppState(
        settings=settings,
        redis=client,
        store=ViewStore(client, prefix, settings.api.view_cache_s),
        verifier=KeyVerifier(client, prefix, settings.api.key_cache_s),
        limiter=RateLimiter(client, prefix, settings.api.rate_limit_window_s),
        model=holder,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if runtime is None and load_model:
            await load_model_once(holder)
        log.info(
            "api started",
            redis=settings.redis.dsn,
            prefix=prefix,
            auth=settings.api.auth_enabled,
            model=holder.version or holder.error,
        )
        try:
            yield
        finally:
            if redis_client is None:
                await client.aclose()

    app = FastAPI(
        title="CryptoPulse API",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.cp = state
    install_problem_handlers(app)

    # The one place the /v1 prefix is set; no auth dependency at all when auth is off
    # (nothing to resolve on the hot path).
    v1 = APIRouter(prefix="/v1", dependencies=api_key_required(settings.api.auth_enabled))
    v1.include_router(coins.router)
    v1.include_router(score.build_router(settings))
    v1.include_router(stream.router)
    v1.include_router(feed.router)
    if settings.api.admin_enabled:
        v1.include_router(admin.router)
    app.include_router(v1)
    app.include_router(health.health_router(settings.api.open_health))
    app.include_router(health.metrics_router(settings.api.open_metrics))

    # Outermost first: metrics see every answer, CORS decorates even 413s.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.api.cors_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["X-API-Key", "Authorization", "Content-Type", "Last-Event-ID"],
        expose_headers=["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
        max_age=600,
    )
    app.add_middleware(MetricsMiddleware)
    install_openapi(app, auth_enabled=settings.api.auth_enabled)
    return app


def app() -> FastAPI:
    """Factory for ``uvicorn --factory api.main:app``: process settings, validated now."""
    from cryptopulse.core.logs import configure_logging
    from cryptopulse.core.settings import get_settings

    settings = get_settings()
    configure_logging(settings)
    return create_app(settings)
