"""The FastAPI application factory: ``create_app(settings)``.

Serves the Redis materialized views under /v1 (no Kafka or Spark on the request path,
except the /v1/admin Kafka view), on-demand scoring through the shared runtime, live
updates over SSE, health and Prometheus metrics. ``uvicorn --factory api.main:app``
builds it from the process settings, validated at start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import structlog
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.deps import caller_checks
from api.middleware import BodyLimitMiddleware, MetricsMiddleware
from api.openapi import install_openapi
from api.problems import install_problem_handlers
from api.routes import admin, alerts, coins, feed, feedback, health, models, review, score, stream
from api.security import KeyVerifier, RateLimiter
from api.state import (
    AppState,
    bound_registry_calls,
    load_model_once,
    start_model_follower,
    stop_model_follower,
)
from api.store import ViewStore
from api.streams import StreamSlots
from core.redact import mask_url_credentials
from core.settings import Settings
from scoring.holder import ModelHolder

log = structlog.get_logger(__name__)

DESCRIPTION = """
Real-time cryptocurrency sentiment from Reddit and news, scored by an ONNX ensemble and
aggregated by Spark into 1m/5m/1h/1d windows. Every read comes from Redis views.

* **Auth**: when enabled, send `X-API-Key: cpk_...` (or `Authorization: Bearer cpk_...`);
  keys come from `cryptopulse apikey create`.
* **Rate limits**: per key (per client address while auth is off), sliding window;
  `429` with `Retry-After` when exceeded. Open SSE streams are capped too.
* **Scopes**: `/v1/admin` (raw Kafka messages) needs a key with the `admin` scope;
  `/v1/alerts/subscriptions` (webhooks) the `alerts` scope.
* **Errors**: `application/problem+json` (RFC 9457) with the reason in `detail`.
"""

TAGS = [
    {"name": "sentiment", "description": "coins, windows, trending and market mood"},
    {
        "name": "scoring",
        "description": "on-demand scoring, registry versions and their moves",
    },
    {"name": "review", "description": "human feedback: the review queue and labels for the learning loop"},
    {"name": "live", "description": "Server-Sent Events from Redis pub/sub"},
    {"name": "feed", "description": "latest posts, alerts, service info"},
    {"name": "alerts", "description": "alert subscriptions: signed webhooks (Slack/Discord-compatible)"},
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
    from core.version import __version__

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
        bound_registry_calls()  # the registry (MLflow) away is a quick 503, not minutes of retries
        follower: asyncio.Task[None] | None = None
        if runtime is None and load_model:
            await load_model_once(holder)
            follower = start_model_follower(holder, settings)  # follows `champion`: hot swap
        log.info(
            "api started",
            redis=mask_url_credentials(settings.redis.dsn),
            prefix=prefix,
            auth=settings.api.auth_enabled,
            model=holder.version or holder.error,
        )
        try:
            yield
        finally:
            await stop_model_follower(follower)
            if follower is not None:
                await holder.close()
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
    app.state.streams = StreamSlots(settings.api.sse_max_streams, settings.api.sse_max_streams_per_client)
    install_problem_handlers(app)

    # The one place the /v1 prefix is set; every /v1 call is identified and rate limited
    # (by API key with auth on, by client address otherwise).
    v1 = APIRouter(prefix="/v1", dependencies=caller_checks(True))
    v1.include_router(coins.router)
    v1.include_router(score.build_router(settings))
    v1.include_router(stream.router)
    v1.include_router(feed.router)
    v1.include_router(alerts.router)
    v1.include_router(models.router)
    v1.include_router(review.router)
    v1.include_router(feedback.router)
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
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["X-API-Key", "Authorization", "Content-Type", "Last-Event-ID"],
        expose_headers=["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
        max_age=600,
    )
    app.add_middleware(MetricsMiddleware)
    if settings.api.trusted_proxies:
        # Outermost, so the limits and the logs see the client behind the proxy; only the
        # configured proxies are believed (uvicorn's own default, 127.0.0.1, is switched off).
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.api.trusted_proxies))
    install_openapi(
        app,
        auth_enabled=settings.api.auth_enabled,
        rate_limited=settings.api.auth_enabled or settings.api.anonymous_rate_limit_per_minute > 0,
    )
    return app


def app() -> FastAPI:
    """Factory for ``uvicorn --factory api.main:app``: process settings, validated now."""
    from core.logs import configure_logging
    from core.settings import get_settings

    settings = get_settings()
    configure_logging(settings)
    return create_app(settings)
