"""Liveness, readiness (Redis and model) and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from api import metrics
from api.deps import StateDep, caller_checks
from api.models import Check, Health, Readiness
from api.openapi import errors
from api.problems import REDIS_RETRY_AFTER_S
from api.routes.feed import model_status


async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


async def readyz(state: StateDep) -> JSONResponse:
    """Readiness: Redis answers (and the model is loaded when api.require_model)."""
    t0 = time.perf_counter()
    try:
        await state.redis.ping()
        redis_check = Check(ok=True, latency_ms=round((time.perf_counter() - t0) * 1000, 3))
    except Exception as exc:  # connection refused, timeout, auth
        redis_check = Check(ok=False, detail=f"{type(exc).__name__}: {exc}")
    model = model_status(state)
    model_check = Check(ok=model.loaded, detail=None if model.loaded else model.error)
    ready = redis_check.ok and (model.loaded or not state.settings.api.require_model)
    body = Readiness(
        status="ready" if ready else "not ready",
        checks={"redis": redis_check, "model": model_check},
        model=model,
    )
    if ready:
        return JSONResponse(body.model_dump(mode="json"))
    return JSONResponse(
        body.model_dump(mode="json"), status_code=503, headers={"Retry-After": str(REDIS_RETRY_AFTER_S)}
    )


def health_router(open_health: bool) -> APIRouter:
    """/healthz and /readyz, behind the API key unless ``api.open_health``."""
    auth_errors = {} if open_health else errors(401, 429)
    r = APIRouter(tags=["health"], dependencies=caller_checks(not open_health))
    r.add_api_route(
        "/healthz", healthz, methods=["GET"], response_model=Health, summary="Liveness", responses=auth_errors
    )
    r.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=Readiness,
        summary="Readiness: Redis (and the model when api.require_model)",
        responses={
            503: {"model": Readiness, "description": "Not ready; the failing check says why"},
            **auth_errors,
        },
    )
    return r


async def metrics_endpoint(state: StateDep) -> Response:
    """Prometheus exposition (all workers)."""
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)


def metrics_router(open_metrics: bool) -> APIRouter:
    """/metrics, behind the API key unless ``api.open_metrics``."""
    r = APIRouter(tags=["health"])
    r.add_api_route(
        "/metrics",
        metrics_endpoint,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
        dependencies=caller_checks(not open_metrics),
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "exposition format",
            },
            **({} if open_metrics else errors(401, 429)),
        },
    )
    return r


__all__ = ["health_router", "metrics_router"]
