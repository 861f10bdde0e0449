"""OpenAPI helpers: documented error responses and the problem+json media type."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.problems import PROBLEM_MEDIA_TYPE, Problem

_DESCRIPTIONS = {
    401: "Missing, invalid or revoked API key",
    403: "The API key lacks the scope this route needs",
    404: "Unknown coin, or no data for it yet",
    413: "Request body too large",
    422: "Invalid parameter or body",
    429: "Rate limit (or open-stream cap) exceeded; see Retry-After",
    503: "A dependency (Redis, model, Kafka) is unavailable",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for these status codes, all problem+json."""
    return {code: {"model": Problem, "description": _DESCRIPTIONS.get(code, "Error")} for code in codes}


AUTHED = (401, 429)


def _redis_unavailable() -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS[503],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def install_openapi(app: FastAPI, *, auth_enabled: bool, rate_limited: bool) -> None:
    """Generate once; error bodies are served as application/problem+json, so say so.

    Security requirements (and 401/403) are documented only when auth is enabled, 429
    only when some rate limit applies: a document that demands keys the server ignores
    would mislead clients (and fails conformance tests).
    """
    absent = ([] if auth_enabled else ["401", "403"]) + ([] if rate_limited else ["429"])

    def custom() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            servers=app.servers,
        )
        if not auth_enabled:
            schema.get("components", {}).pop("securitySchemes", None)
        for path, path_item in schema.get("paths", {}).items():
            for operation in path_item.values():
                if path.startswith("/v1/"):
                    # Every /v1 call reads Redis (views, keys, limits) before anything else.
                    operation.setdefault("responses", {}).setdefault("503", _redis_unavailable())
                if not auth_enabled:
                    operation.pop("security", None)
                for code in absent:
                    operation.get("responses", {}).pop(code, None)
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content")
                    json_body = (content or {}).get("application/json", {})
                    is_problem = str(json_body.get("schema", {}).get("$ref", "")).endswith("/Problem")
                    if content and status.isdigit() and int(status) >= 400 and is_problem:
                        content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
        app.openapi_schema = schema
        return schema

    app.openapi = custom  # type: ignore[method-assign]
