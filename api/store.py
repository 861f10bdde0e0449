"""Read side of the Redis materialized views (the only data source of the request path)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from schemas.events import Alert, DataQualityReport, PriceTick, ScoredPost, TrendWindow, WindowSize
from schemas.redis_keys import RedisKeys

T = TypeVar("T")


def _parse(model: Any, raw: bytes | str | None) -> Any:
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None  # a corrupt view entry is skipped, never a 500


class ViewStore:
    """Typed reads over ``redis.asyncio``; keys come from :mod:`schemas.redis_keys`.

    The hottest reads go through a per-process micro-cache of ``cache_s`` seconds: views
    change once per window (a minute or more), so at 1,000 req/s this removes almost
    every Redis round trip for a staleness far below the window length. 0 disables it.
    """

    def __init__(self, client: Any, prefix: str, cache_s: float = 0.0) -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self.cache_s = cache_s
        self._cache: dict[tuple[Any, ...], tuple[float, Any]] = {}

    async def _cached(self, key: tuple[Any, ...], load: Callable[[], Awaitable[T]]) -> T:
        if self.cache_s <= 0:
            return await load()
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await load()
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = (now + self.cache_s, value)
        return value

    async def coins(self) -> list[str]:
        members = await self.client.smembers(self.keys.coins())
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def is_tracked(self, coin: str) -> bool:
        return bool(await self.client.sismember(self.keys.coins(), coin))

    async def sentiment(
        self, coin: str, window: WindowSize
    ) -> tuple[bool, TrendWindow | None, PriceTick | None]:
        """(tracked, latest window, latest price) in one round trip: the hottest read."""

        async def load() -> tuple[bool, TrendWindow | None, PriceTick | None]:
            pipe = self.client.pipeline(transaction=False)
            pipe.sismember(self.keys.coins(), coin)
            pipe.get(self.keys.trend_latest(window, coin))
            pipe.get(self.keys.price_latest(coin))
            tracked, raw, price = await pipe.execute()
            return bool(tracked), _parse(TrendWindow, raw), _parse(PriceTick, price)

        return await self._cached(("sentiment", coin, window), load)

    async def latest(self, coin: str, window: WindowSize) -> TrendWindow | None:
        return _parse(TrendWindow, await self.client.get(self.keys.trend_latest(window, coin)))

    async def latest_many(self, coins: list[str], window: WindowSize) -> list[TrendWindow | None]:
        if not coins:
            return []
        raws = await self.client.mget([self.keys.trend_latest(window, c) for c in coins])
        return [_parse(TrendWindow, r) for r in raws]

    async def latest_all(self, window: WindowSize) -> list[TrendWindow]:
        """Every tracked coin's latest window of this size (trending, market mood), micro-cached."""

        async def load() -> list[TrendWindow]:
            windows = await self.latest_many(await self.coins(), window)
            return [w for w in windows if w is not None]

        return await self._cached(("latest_all", window), load)

    async def prices(self, coins: list[str]) -> list[PriceTick | None]:
        if not coins:
            return []
        raws = await self.client.mget([self.keys.price_latest(c) for c in coins])
        return [_parse(PriceTick, r) for r in raws]

    async def timeseries(
        self, coin: str, window: WindowSize, start: datetime | None, end: datetime | None, limit: int
    ) -> list[TrendWindow]:
        """The newest ``limit`` windows within [start, end], returned oldest first."""
        lo = str(int(start.timestamp())) if start else "-inf"
        hi = str(int(end.timestamp())) if end else "+inf"
        raws = await self.client.zrevrangebyscore(
            self.keys.trend_ts(window, coin), hi, lo, start=0, num=limit
        )
        points = [p for p in (_parse(TrendWindow, r) for r in raws) if p is not None]
        points.reverse()
        return points

    async def posts(self, limit: int) -> list[ScoredPost]:
        raws = await self.client.lrange(self.keys.posts_latest(), 0, limit - 1)
        return [p for p in (_parse(ScoredPost, r) for r in raws) if p is not None]

    async def quality_sources(self) -> list[str]:
        members = await self.client.smembers(self.keys.quality_sources())
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def quality_latest(self) -> list[DataQualityReport]:
        sources = await self.quality_sources()
        if not sources:
            return []
        raws = await self.client.mget([self.keys.quality_latest(s) for s in sources])
        return [r for r in (_parse(DataQualityReport, raw) for raw in raws) if r is not None]

    async def quality_history(self, source: str, limit: int) -> list[DataQualityReport]:
        raws = await self.client.lrange(self.keys.quality_history(source), 0, limit - 1)
        return [r for r in (_parse(DataQualityReport, raw) for raw in raws) if r is not None]

    async def alerts(self, limit: int) -> list[Alert]:
        raws = await self.client.lrange(self.keys.alerts_latest(), 0, limit - 1)
        return [a for a in (_parse(Alert, r) for r in raws) if a is not None]
