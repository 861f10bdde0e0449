"""Read side of the Redis materialized views (the only data source of the request path)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.events import Alert, PriceTick, ScoredPost, TrendWindow, WindowSize
from schemas.redis_keys import RedisKeys


def _parse(model: Any, raw: bytes | str | None) -> Any:
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None  # a corrupt view entry is skipped, never a 500


class ViewStore:
    """Typed reads over ``redis.asyncio``; keys come from :mod:`schemas.redis_keys`."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.keys = RedisKeys(prefix)

    async def coins(self) -> list[str]:
        members = await self.client.smembers(self.keys.coins())
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def is_tracked(self, coin: str) -> bool:
        return bool(await self.client.sismember(self.keys.coins(), coin))

    async def sentiment(
        self, coin: str, window: WindowSize
    ) -> tuple[bool, TrendWindow | None, PriceTick | None]:
        """(tracked, latest window, latest price) in one round trip: the hottest read."""
        pipe = self.client.pipeline(transaction=False)
        pipe.sismember(self.keys.coins(), coin)
        pipe.get(self.keys.trend_latest(window, coin))
        pipe.get(self.keys.price_latest(coin))
        tracked, raw, price = await pipe.execute()
        return bool(tracked), _parse(TrendWindow, raw), _parse(PriceTick, price)

    async def latest(self, coin: str, window: WindowSize) -> TrendWindow | None:
        return _parse(TrendWindow, await self.client.get(self.keys.trend_latest(window, coin)))

    async def latest_many(self, coins: list[str], window: WindowSize) -> list[TrendWindow | None]:
        if not coins:
            return []
        raws = await self.client.mget([self.keys.trend_latest(window, c) for c in coins])
        return [_parse(TrendWindow, r) for r in raws]

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

    async def trending(self, window: WindowSize, limit: int) -> list[tuple[str, float]]:
        rows = await self.client.zrevrange(self.keys.trending(window), 0, limit - 1, withscores=True)
        return [(c.decode() if isinstance(c, bytes) else c, float(s)) for c, s in rows]

    async def posts(self, limit: int) -> list[ScoredPost]:
        raws = await self.client.lrange(self.keys.posts_latest(), 0, limit - 1)
        return [p for p in (_parse(ScoredPost, r) for r in raws) if p is not None]

    async def alerts(self, limit: int) -> list[Alert]:
        raws = await self.client.lrange(self.keys.alerts_latest(), 0, limit - 1)
        return [a for a in (_parse(Alert, r) for r in raws) if a is not None]
