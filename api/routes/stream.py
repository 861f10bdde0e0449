"""GET /v1/stream: live scored posts and trend updates as Server-Sent Events.

Each connection subscribes to the Redis pub/sub channels (``live:scored``,
``live:trends``); a comment line every ``api.sse_heartbeat_s`` keeps proxies from
closing an idle stream. Nothing here touches Kafka.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator

from api.deps import COIN_ID_PATTERN, StateDep
from api.metrics import SSE_CLIENTS
from api.openapi import AUTHED, errors

router = APIRouter(tags=["live"])
log = structlog.get_logger(__name__)

_SSE_DOC = (
    "event: scored\n"
    'data: {"source_id": "t3_abc", "label": "positive", "coins": ["bitcoin"], ...}\n\n'
    "event: trend\n"
    'data: {"coin": "bitcoin", "window": "1m", "volume": 12, ...}\n\n'
)


def _split_commas(value: object) -> object:
    """Accept ``events=scored,trend`` as well as repeated ``events=`` parameters (both are
    common ways to pass a list in a URL; the README shows the first)."""
    if isinstance(value, list):
        return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    return value


EventTypes = Annotated[
    list[Literal["scored", "trend"]] | None,
    BeforeValidator(_split_commas),
    Query(description="event types to receive, repeated or comma-separated (default both)"),
]


def _sse(event: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


@router.get(
    "/stream",
    summary="Live scored posts and trend updates (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "event stream: `scored` (ScoredPost JSON) and `trend` (TrendWindow JSON)",
            "content": {"text/event-stream": {"schema": {"type": "string"}, "example": _SSE_DOC}},
        },
        **errors(*AUTHED, 422),
    },
)
async def stream(
    request: Request,
    state: StateDep,
    events: EventTypes = None,
    coin: Annotated[str | None, Query(pattern=COIN_ID_PATTERN, description="only this coin")] = None,
    max_events: Annotated[
        int | None, Query(ge=1, le=100_000, description="close after this many events")
    ] = None,
) -> StreamingResponse:
    keys = state.store.keys
    wanted = set(events or ["scored", "trend"])
    channels = {keys.live_scored(): "scored", keys.live_trends(): "trend"}
    channels = {ch: ev for ch, ev in channels.items() if ev in wanted}
    pubsub = state.redis.pubsub()
    await pubsub.subscribe(*channels)
    heartbeat = state.settings.api.sse_heartbeat_s

    async def generate() -> AsyncIterator[bytes]:
        sent = 0
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        SSE_CLIENTS.inc()
        try:
            yield b": connected\n\n"
            while max_events is None or sent < max_events:
                if await request.is_disconnected():
                    break
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=min(heartbeat, 1.0)
                )
                if message is None:
                    if loop.time() - last_beat >= heartbeat:
                        last_beat = loop.time()
                        yield b": keep-alive\n\n"
                    continue
                channel = message["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else channel
                data = message["data"]
                data = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
                if coin is not None and not _mentions(data, coin):
                    continue
                yield _sse(channels.get(channel, "message"), data)
                sent += 1
        finally:
            SSE_CLIENTS.dec()
            await pubsub.unsubscribe()
            await pubsub.aclose()

    return StreamingResponse(
        generate(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _mentions(data: str, coin: str) -> bool:
    try:
        payload = json.loads(data)
    except ValueError:
        return False
    return bool(payload.get("coin") == coin or coin in (payload.get("coins") or []))
