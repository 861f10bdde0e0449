"""Pure ASGI middleware: request body limit (413) and request metrics/logging.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses (SSE) are not buffered and
the per-request overhead stays in microseconds.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import LATENCY, REQUESTS
from api.problems import problem_response

log = structlog.get_logger("api.access")


class BodyLimitMiddleware:
    """Rejects request bodies over ``max_bytes`` with 413 before the app sees them.

    A declared Content-Length is checked up front; chunked bodies are read (at most
    ``max_bytes + 1`` bytes) and replayed to the app, so the limit cannot be bypassed.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._reject(scope, receive, send, declared)
                    return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(scope, receive, send, size)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        response = problem_response(
            413,
            "Request body too large",
            f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes",
            slug="body-too-large",
            instance=scope.get("path"),
        )
        await response(scope, receive, send)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (bounded label set).

    It also adds the rate-limit headers the auth dependency left in the request state,
    so they reach the client whatever kind of response the route returned.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = scope.get("state", {}).get("rate_headers")
                if extra:
                    present = {k.lower() for k, _ in message.get("headers", [])}
                    message["headers"] = [
                        *message.get("headers", []),
                        *(
                            (k.lower().encode(), v.encode())
                            for k, v in extra.items()
                            if k.lower().encode() not in present
                        ),
                    ]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # FastAPI >= 0.137 leaves an included router's prefix (/v1) out of scope["route"];
            # the path as served, every prefix included, is on the effective route context.
            served: Any = scope.get("fastapi", {}).get("effective_route_context")
            route: Any = scope.get("route")
            template = getattr(served, "path", None) or getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - start
            REQUESTS.labels(scope["method"], template, str(status)).inc()
            LATENCY.labels(template).observe(elapsed)
            if status >= 500:
                log.warning("request failed", method=scope["method"], path=scope["path"], status=status)
