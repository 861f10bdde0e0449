"""Errors as RFC 9457 ``application/problem+json`` documents with a clear reason.

Every error the API returns, whether raised by a route, by validation or by a
middleware, goes through :func:`problem_response`, so clients parse one shape.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"
REDIS_RETRY_AFTER_S = 5
"""Suggested wait while Redis (every view, key and limit) is unreachable."""
log = structlog.get_logger(__name__)


class FieldError(BaseModel):
    """One invalid input field."""

    loc: list[str | int] = Field(examples=[["query", "window"]])
    msg: str = Field(examples=["Input should be '1m', '5m', '1h', '1d' or '1h_5m'"])
    type: str = Field(examples=["enum"])


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "https://cryptopulse.dev/problems/unknown-coin",
                    "title": "Unknown coin",
                    "status": 404,
                    "detail": "coin 'dogecash' is not tracked",
                    "instance": "/v1/coins/dogecash/sentiment",
                }
            ]
        }
    )

    type: str = Field(default="about:blank", description="URI identifying the problem type")
    title: str = Field(description="short, human-readable summary of the problem type")
    status: int = Field(ge=400, le=599)
    detail: str | None = Field(default=None, description="the reason for this occurrence")
    instance: str | None = Field(default=None, description="the request path")
    errors: list[FieldError] | None = Field(default=None, description="invalid fields (422 only)")


class ProblemError(Exception):
    """Raise from anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.headers = headers or {}


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem_response(
    status: int,
    title: str | None = None,
    detail: str | None = None,
    *,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """A problem+json response; ``slug`` names the problem type URI."""
    body: dict[str, Any] = {
        "type": f"https://cryptopulse.dev/problems/{slug}" if slug else "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _clean_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        out.append(
            {
                "loc": [p if isinstance(p, int) else str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error through problem+json."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status, exc.title, exc.detail, slug=exc.slug, instance=request.url.path, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_errors(exc)
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"])
        return problem_response(
            422,
            "Invalid request",
            f"{where}: {first['msg']}" if where else str(first["msg"]),
            slug="validation",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(
            exc.status_code, None, detail, instance=request.url.path, headers=dict(exc.headers or {})
        )

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Redis away (refused, timed out, loading, wrong password) is an outage the client
        # can wait out, not a server bug: 503 with Retry-After, never 500.
        log.warning("redis unavailable", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
        return problem_response(
            503,
            "Redis unavailable",
            "the view store (Redis) is not reachable; retry shortly",
            slug="redis-unavailable",
            instance=request.url.path,
            headers={"Retry-After": str(REDIS_RETRY_AFTER_S)},
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(
            500, None, f"unexpected {type(exc).__name__}", slug="internal", instance=request.url.path
        )
