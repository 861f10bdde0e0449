"""Live view in Redis: counter mirror (hashes + zset) and pub/sub channels.

Best effort by design: the Faust tables are the source of truth and Kafka the record
of every scored post, so a Redis outage is logged and counted, never allowed to
stall or crash the stream. Writes are idempotent (``HSET`` of the table's current
value, not ``HINCRBY``), so a replay after a restart rewrites the same numbers.

Every write goes through :class:`views.AsyncRedisViewWriter`; key names come from the
shared schema (:class:`schemas.redis_keys.RedisKeys`, documented in docs/redis-keys.md);
prefix = settings.redis.key_prefix:

* ``{prefix}:live:counter:{window}:{coin}`` hash: window_start, window_end (epoch s),
  volume, score_sum, mean_score, updated (epoch s); expires after two windows;
* ``{prefix}:live:volume:{window}`` sorted set: coin -> volume of its latest window;
* ``{prefix}:posts:latest`` list: newest-first ScoredPost JSON, deduplicated and capped;
* channel ``{prefix}:live:scored``: every ScoredPost as JSON;
* channel ``{prefix}:live:counters``: every counter change as JSON.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import structlog

from schemas.events import Alert, DataQualityReport, ScoredPost
from stream_processors.metrics import REDIS_ERRORS
from views import AsyncRedisViewWriter

log = structlog.get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class CounterUpdate:
    """One coin's tumbling-window counter after a micro-batch."""

    coin: str
    window: str
    window_start: float
    window_end: float
    volume: int
    score_sum: float

    @property
    def mean_score(self) -> float:
        return self.score_sum / self.volume if self.volume else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean_score": round(self.mean_score, 6)}


class LivePublisher:
    """Mirrors counters to Redis and fans scored posts/counter updates out on pub/sub."""

    def __init__(self, dsn: str, prefix: str, *, enabled: bool = True) -> None:
        self.prefix = prefix
        self.enabled = enabled
        self._dsn = dsn
        self._views: AsyncRedisViewWriter | None = None
        self._last_error = 0.0

    def _writer(self) -> AsyncRedisViewWriter:
        if self._views is None:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(self._dsn, socket_timeout=2.0, socket_connect_timeout=2.0)
            self._views = AsyncRedisViewWriter(client, self.prefix)
        return self._views

    async def publish(self, scored: Sequence[ScoredPost], counters: Sequence[CounterUpdate]) -> None:
        if not self.enabled or (not scored and not counters):
            return
        if time.monotonic() - self._last_error < 5.0:
            return  # back off after a failure instead of paying a timeout per batch
        views = self._writer()
        try:
            views.add_scored_posts(scored)
            now = time.time()
            for update in counters:
                views.add_live_counter(update, updated=now)
            await views.flush()
        except Exception as exc:
            views.discard()
            self._last_error = time.monotonic()
            REDIS_ERRORS.inc()
            log.warning("redis live publish failed", error=str(exc))

    async def alert_raised(self, alert: Alert) -> bool:
        """Whether Redis remembers this alert (False when Redis is off or down: send it)."""
        ok, seen = await self._best_effort(lambda views: views.alert_raised(alert), "alert lookup")
        return ok and bool(seen)

    async def record_alert(self, alert: Alert) -> bool:
        """Remember the alert and list it in ``alerts:latest``; True when it was new."""
        ok, new = await self._best_effort(lambda views: views.raise_alert_once(alert), "alert record")
        return ok and bool(new)

    async def record_quality(self, report: DataQualityReport) -> bool:
        """Write a closed data-quality window for the API and dashboard; True when written."""

        async def write(views: AsyncRedisViewWriter) -> None:
            views.add_quality_report(report)
            await views.flush()

        ok, _ = await self._best_effort(write, "quality report write")
        return ok

    async def _best_effort(
        self, call: Callable[[AsyncRedisViewWriter], Awaitable[T]], what: str
    ) -> tuple[bool, T | None]:
        """``(True, call(views))``, or ``(False, None)`` when Redis is off or the call fails
        (logged and counted: Redis never stops the stream)."""
        if not self.enabled:
            return False, None
        try:
            return True, await call(self._writer())
        except Exception as exc:
            REDIS_ERRORS.inc()
            log.warning(f"redis {what} failed", error=str(exc))
            return False, None

    async def close(self) -> None:
        if self._views is not None:
            await self._views.client.aclose()
            self._views = None
