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
* ``{prefix}:price:latest:{coin}``: the newest price tick of each coin (the prices agent);
* ``{prefix}:posts:latest`` list: newest-first ScoredPost JSON, deduplicated and capped;
* channel ``{prefix}:live:scored``: every ScoredPost as JSON;
* channel ``{prefix}:live:counters``: every counter change as JSON;
* ``{prefix}:review:queue`` / ``{prefix}:review:post:{id}``: review candidates
  (:mod:`stream_processors.review`), in the same pipeline as the batch's posts;
* ``{prefix}:shadow:stats:{champion}:{challenger}``: the shadow agent's counters.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import structlog

from schemas.events import Alert, DataQualityReport, PriceTick, ScoredPost
from stream_processors.metrics import REDIS_ERRORS, REVIEW_QUEUED
from stream_processors.review import SHIFT_WINDOW, ReviewCandidate
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

    async def publish(
        self,
        scored: Sequence[ScoredPost],
        counters: Sequence[CounterUpdate],
        review: Sequence[ReviewCandidate] = (),
    ) -> None:
        """One pipeline per batch: latest posts, live events, counters and review candidates."""
        if not self.enabled or (not scored and not counters and not review):
            return
        if time.monotonic() - self._last_error < 5.0:
            return  # back off after a failure instead of paying a timeout per batch
        views = self._writer()
        try:
            views.add_scored_posts(scored)
            now = time.time()
            for update in counters:
                views.add_live_counter(update, updated=now)
            for candidate in review:
                views.add_review_candidate(
                    candidate.post, candidate.priority, candidate.reasons, candidate.challenger_label
                )
            result = await views.flush()
            if review:
                REVIEW_QUEUED.inc(result.review_queued)
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

    async def record_price(self, tick: PriceTick) -> bool:
        """Keep ``price:latest`` of the tick's coin (the newer tick wins); True when written."""

        async def write(views: AsyncRedisViewWriter) -> None:
            views.add_price(tick)
            await views.flush()

        ok, _ = await self._best_effort(write, "price write")
        return ok

    async def count_shadow(
        self, champion: str, challenger: str, counts: dict[str, int]
    ) -> dict[str, int] | None:
        """Add to a champion/challenger pair's shadow counters; their totals, or None when
        Redis is off or the write failed (logged and counted)."""
        _, totals = await self._best_effort(
            lambda views: views.count_shadow(champion, challenger, counts), "shadow counters write"
        )
        return totals

    async def shadow_stats(self, champion: str, challenger: str) -> dict[str, int] | None:
        """A pair's shadow counters, or None when Redis is off or the read failed."""
        _, stats = await self._best_effort(
            lambda views: views.shadow_stats(champion, challenger), "shadow counters read"
        )
        return stats

    async def latest_trends(self, coins: Sequence[str]) -> dict[str, str | None]:
        """The review queue's trend reader (raises on failure: :class:`~.review.CoinShifts` backs off)."""
        if not self.enabled:
            return {}
        return await self._writer().latest_trends(SHIFT_WINDOW, coins)

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
