"""Live view in Redis: counter mirror (hashes + zset) and pub/sub channels.

Best effort by design: the Faust tables are the source of truth and Kafka the record
of every scored post, so a Redis outage is logged and counted, never allowed to
stall or crash the stream. Writes are idempotent (``HSET`` of the table's current
value, not ``HINCRBY``), so a replay after a restart rewrites the same numbers.

Key names come from the shared schema (:class:`schemas.redis_keys.RedisKeys`, documented
in docs/redis-keys.md); prefix = settings.redis.key_prefix:

* ``{prefix}:live:counter:{window}:{coin}`` hash: window_start, window_end (epoch s),
  volume, score_sum, mean_score, updated (epoch s); expires after two windows;
* ``{prefix}:live:volume:{window}`` sorted set: coin -> volume of its latest window;
* ``{prefix}:posts:latest`` list: newest-first ScoredPost JSON, capped (same LREM/LPUSH/
  LTRIM as ``schemas.redis_keys.record_scored_post``, batched in one pipeline);
* channel ``{prefix}:live:scored``: every ScoredPost as JSON;
* channel ``{prefix}:live:counters``: every counter change as JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from schemas.events import Alert, DataQualityReport, ScoredPost
from schemas.redis_keys import (
    POSTS_LATEST_MAX,
    RedisKeys,
    aalert_raised,
    araise_alert_once,
    awrite_quality_report,
)
from stream_processors.metrics import REDIS_ERRORS

log = structlog.get_logger(__name__)


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


def counter_key(prefix: str, window: str, coin: str) -> str:
    return RedisKeys(prefix).live_counter(window, coin)


def volume_key(prefix: str, window: str) -> str:
    return RedisKeys(prefix).live_volume(window)


def scored_channel(prefix: str) -> str:
    return RedisKeys(prefix).live_scored()


def counters_channel(prefix: str) -> str:
    return RedisKeys(prefix).live_counters()


class LivePublisher:
    """Mirrors counters to Redis and fans scored posts/counter updates out on pub/sub."""

    def __init__(self, dsn: str, prefix: str, *, enabled: bool = True) -> None:
        self.prefix = prefix
        self.enabled = enabled
        self._dsn = dsn
        self._client: Any = None
        self._last_error = 0.0

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(self._dsn, socket_timeout=2.0, socket_connect_timeout=2.0)
        return self._client

    async def publish(self, scored: Sequence[ScoredPost], counters: Sequence[CounterUpdate]) -> None:
        if not self.enabled or (not scored and not counters):
            return
        if time.monotonic() - self._last_error < 5.0:
            return  # back off after a failure instead of paying a timeout per batch
        try:
            pipe = self._redis().pipeline(transaction=False)
            keys = RedisKeys(self.prefix)
            for post in scored:
                payload = post.model_dump_json()
                pipe.lrem(keys.posts_latest(), 0, payload)  # idempotent on replay
                pipe.lpush(keys.posts_latest(), payload)
                pipe.publish(keys.live_scored(), payload)
            if scored:
                pipe.ltrim(keys.posts_latest(), 0, POSTS_LATEST_MAX - 1)
            now = time.time()
            for update in counters:
                key = counter_key(self.prefix, update.window, update.coin)
                data = update.as_dict()
                pipe.hset(
                    key,
                    mapping={
                        "window_start": update.window_start,
                        "window_end": update.window_end,
                        "volume": update.volume,
                        "score_sum": update.score_sum,
                        "mean_score": data["mean_score"],
                        "updated": now,
                    },
                )
                pipe.expire(key, int(2 * (update.window_end - update.window_start)) + 1)
                pipe.zadd(volume_key(self.prefix, update.window), {update.coin: update.volume})
                pipe.publish(counters_channel(self.prefix), json.dumps(data))
            await pipe.execute()
        except Exception as exc:
            self._last_error = time.monotonic()
            REDIS_ERRORS.inc()
            log.warning("redis live publish failed", error=str(exc))

    async def alert_raised(self, alert: Alert) -> bool:
        """Whether Redis remembers this alert (False when Redis is off or down: send it)."""
        ok, seen = await self._best_effort(aalert_raised, alert, "alert lookup")
        return ok and bool(seen)

    async def record_alert(self, alert: Alert) -> bool:
        """Remember the alert and list it in ``alerts:latest``; True when it was new."""
        ok, new = await self._best_effort(araise_alert_once, alert, "alert record")
        return ok and bool(new)

    async def record_quality(self, report: DataQualityReport) -> bool:
        """Write a closed data-quality window for the API and dashboard; True when written."""
        ok, _ = await self._best_effort(awrite_quality_report, report, "quality report write")
        return ok

    async def _best_effort(self, call: Any, value: Any, what: str) -> tuple[bool, Any]:
        """``(True, call(client, prefix, value))``, or ``(False, None)`` when Redis is off or
        the call fails (logged and counted: Redis never stops the stream)."""
        if not self.enabled:
            return False, None
        try:
            return True, await call(self._redis(), self.prefix, value)
        except Exception as exc:
            REDIS_ERRORS.inc()
            log.warning(f"redis {what} failed", error=str(exc))
            return False, None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
