"""GET /v1/stream: live scored posts, trend updates and alerts as Server-Sent Events.

Each connection subscribes to the Redis pub/sub channels (``live:scored``,
``live:trends``, and ``live:alerts`` with ``events=alert``: every alert as the alerting
service reads it from the alerts topic); a comment line every ``api.sse_heartbeat_s`` keeps proxies from
closing an idle stream. Nothing here touches Kafka.

Streams are bounded: at most ``api.sse_max_streams`` open per worker and
``api.sse_max_streams_per_client`` per caller (429 with Retry-After beyond), each closed
cleanly after ``api.sse_max_lifetime_s`` (EventSource clients reconnect by themselves),
and a stream opened with an API key ends within ``api.key_cache_s`` of the key's
revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from api.deps import COIN_ID_PATTERN, CallerDep, StateDep
from api.openapi import AUTHED, errors
from api.streams import StreamSlots

router = APIRouter(tags=["live"])
log = structlog.get_logger(__name__)

_SSE_DOC = (
    "event: scored\n"
    'data: {"source_id": "t3_abc", "label": "positive", "coins": ["bitcoin"], ...}\n\n'
    "event: trend\n"
    'data: {"coin": "bitcoin", "window": "1m", "volume": 12, ...}\n\n'
    "event: alert\n"
    'data: {"kind": "volume_spike", "severity": "warning", "coin": "bitcoin", ...}\n\n'
)


def _split_commas(value: object) -> object:
    """Accept ``events=scored,trend`` as well as repeated ``events=`` parameters (both are
    common ways to pass a list in a URL; the README shows the first)."""
    if isinstance(value, list):
        return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    return value


EventTypes = Annotated[
    list[Literal["scored", "trend", "alert"]] | None,
    BeforeValidator(_split_commas),
    Query(
        description="event types to receive, repeated or comma-separated: scored, trend, alert "
        "(default scored and trend)"
    ),
]


def _sse(event: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


class _EventStream(StreamingResponse):
    """A StreamingResponse that runs ``close`` once it has ended, however it ended.

    A generator's own ``finally`` does not run when the client leaves before its first
    event (it never started); the stream's slot and pub/sub connection must be freed anyway.
    """

    def __init__(self, content: AsyncIterator[bytes], close: Callable[[], Awaitable[None]]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._close()


@router.get(
    "/stream",
    summary="Live scored posts, trend updates and alerts (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "event stream: `scored` (ScoredPost JSON), `trend` (TrendWindow JSON) "
            "and, when asked for, `alert` (Alert JSON)",
            "content": {"text/event-stream": {"schema": {"type": "string"}, "example": _SSE_DOC}},
        },
        **errors(*AUTHED, 422, 503),
    },
)
async def stream(
    request: Request,
    state: StateDep,
    caller: CallerDep,
    events: EventTypes = None,
    coin: Annotated[str | None, Query(pattern=COIN_ID_PATTERN, description="only this coin")] = None,
    max_events: Annotated[
        int | None, Query(ge=1, le=100_000, description="close after this many events")
    ] = None,
) -> StreamingResponse:
    api = state.settings.api
    keys = state.store.keys
    wanted = set(events or ["scored", "trend"])
    channels = {keys.live_scored(): "scored", keys.live_trends(): "trend", keys.live_alerts(): "alert"}
    channels = {ch: ev for ch, ev in channels.items() if ev in wanted}
    slots: StreamSlots = request.app.state.streams
    slot = slots.acquire(caller.key_id)
    pubsub = state.redis.pubsub()

    async def close() -> None:
        slot.release()
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()

    try:
        await pubsub.subscribe(*channels)
    except BaseException:
        await close()
        raise
    heartbeat = api.sse_heartbeat_s
    # Re-read the key from Redis (not the cache) this often, so a revocation ends the
    # stream within api.key_cache_s (at least every second).
    api_key: str | None = getattr(request.state, "api_key", None)
    key_check_s = max(api.key_cache_s, 1.0)

    async def generate() -> AsyncIterator[bytes]:
        sent = 0
        loop = asyncio.get_running_loop()
        opened = last_beat = last_key_check = loop.time()
        yield b": connected\n\n"
        try:
            while max_events is None or sent < max_events:
                if await request.is_disconnected():
                    return
                now = loop.time()
                if now - opened >= api.sse_max_lifetime_s:
                    yield b": stream lifetime reached; reconnect\n\n"
                    return
                if api_key is not None and now - last_key_check >= key_check_s:
                    last_key_check = now
                    if await state.verifier.lookup(api_key) is None:
                        log.info("stream closed: API key revoked", key_id=caller.key_id)
                        yield b": API key revoked\n\n"
                        return
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
        except RedisError as exc:
            # The headers are sent: end the stream; the client's reconnect then gets a 503.
            log.warning("stream closed: Redis unavailable", error=f"{type(exc).__name__}: {exc}")
            yield b": Redis unavailable; reconnect later\n\n"

    return _EventStream(generate(), close)


def _mentions(data: str, coin: str) -> bool:
    try:
        payload = json.loads(data)
    except ValueError:
        return False
    return bool(payload.get("coin") == coin or coin in (payload.get("coins") or []))
