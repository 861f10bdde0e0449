"""The one Redis key schema, shared by every writer (Spark, faust) and reader (API).

Every Redis key and pub/sub channel CryptoPulse uses is built here, from the prefix
``settings.redis.key_prefix``, so writers and readers cannot drift apart. The writer
helpers below are the only code that writes the materialized views; they are
idempotent, so a replayed micro-batch leaves Redis byte-for-byte identical:

* ``trend:latest`` is replaced only by a window that starts at the same time or later
  (compared on the fixed-width ISO-8601 ``window_start``);
* ``trend:ts`` drops any member with the same ``window_start`` before adding the new
  one, and trims by retention relative to its newest member (not the wall clock);
* ``posts:latest`` / ``alerts:latest`` remove an equal member before pushing it.

See ``docs/redis-keys.md`` for the documented layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from schemas.events import Alert, DataQualityReport, PriceTick, ScoredPost, TrendWindow, WindowSize

WINDOW_SECONDS: dict[WindowSize, int] = {
    WindowSize.ONE_MINUTE: 60,
    WindowSize.FIVE_MINUTES: 300,
    WindowSize.ONE_HOUR: 3600,
    WindowSize.ONE_DAY: 86_400,
    WindowSize.ONE_HOUR_SLIDING: 3600,
}
"""Length of each window size (the sliding ``1h_5m`` window is one hour long)."""

RETENTION_SECONDS: dict[WindowSize, int] = {
    WindowSize.ONE_MINUTE: 24 * 3600,  # 1,440 points
    WindowSize.FIVE_MINUTES: 7 * 86_400,  # 2,016 points
    WindowSize.ONE_HOUR: 90 * 86_400,  # 2,160 points
    WindowSize.ONE_DAY: 3 * 365 * 86_400,  # 1,095 points
    WindowSize.ONE_HOUR_SLIDING: 7 * 86_400,  # 2,016 points
}
"""How far back ``trend:ts`` keeps windows, measured from the newest window of the series."""

POSTS_LATEST_MAX = 500
"""Length cap of ``posts:latest`` (the dashboard shows the newest few dozen)."""

ALERTS_LATEST_MAX = 200
QUALITY_HISTORY_MAX = 288
"""Data-quality windows kept per source: a day of 5-minute windows."""
"""Length cap of ``alerts:latest``."""


@dataclass(frozen=True)
class RedisKeys:
    """Key and channel names under one prefix (``settings.redis.key_prefix``)."""

    prefix: str

    # -- materialized views (written by Spark / faust, read by the API) ---------------
    def trend_latest(self, window: WindowSize | str, coin: str) -> str:
        """STRING: JSON TrendWindow, the latest window of this size for the coin."""
        return f"{self.prefix}:trend:latest:{WindowSize(window).value}:{coin}"

    def trend_ts(self, window: WindowSize | str, coin: str) -> str:
        """ZSET: score = window_start epoch seconds, member = JSON TrendWindow."""
        return f"{self.prefix}:trend:ts:{WindowSize(window).value}:{coin}"

    def trending(self, window: WindowSize | str) -> str:
        """ZSET: coin -> volume_zscore of its latest window of this size."""
        return f"{self.prefix}:trending:{WindowSize(window).value}"

    def coins(self) -> str:
        """SET: ids of every coin with at least one trend window."""
        return f"{self.prefix}:coins"

    def coin_meta(self, coin: str) -> str:
        """HASH: optional display metadata of a coin (name, symbol)."""
        return f"{self.prefix}:coin:meta:{coin}"

    def price_latest(self, coin: str) -> str:
        """STRING: JSON PriceTick, the newest tick of the coin."""
        return f"{self.prefix}:price:latest:{coin}"

    def posts_latest(self) -> str:
        """LIST: newest-first JSON ScoredPost, capped at POSTS_LATEST_MAX."""
        return f"{self.prefix}:posts:latest"

    def alert_seen(self, source_id: str) -> str:
        """STRING (with TTL): marks an alert as raised, so it is raised once."""
        return f"{self.prefix}:alert:seen:{source_id}"

    def quality_latest(self, source: str) -> str:
        """STRING: JSON DataQualityReport of the source's latest closed window."""
        return f"{self.prefix}:quality:latest:{source}"

    def quality_history(self, source: str) -> str:
        """LIST: newest-first JSON DataQualityReport, capped at QUALITY_HISTORY_MAX."""
        return f"{self.prefix}:quality:history:{source}"

    def quality_sources(self) -> str:
        """SET: sources that have a data-quality report."""
        return f"{self.prefix}:quality:sources"

    def alerts_latest(self) -> str:
        """LIST: newest-first JSON Alert, capped at ALERTS_LATEST_MAX."""
        return f"{self.prefix}:alerts:latest"

    # -- pub/sub ------------------------------------------------------------------------
    def live_scored(self) -> str:
        """CHANNEL: every ScoredPost as JSON."""
        return f"{self.prefix}:live:scored"

    def live_trends(self) -> str:
        """CHANNEL: every written TrendWindow as JSON."""
        return f"{self.prefix}:live:trends"

    def live_counters(self) -> str:
        """CHANNEL: faust's tumbling counter updates as JSON."""
        return f"{self.prefix}:live:counters"

    # -- faust live counters (stream_processors/live.py) ---------------------------------
    def live_counter(self, window: str, coin: str) -> str:
        """HASH: faust's in-progress counter of a coin and window."""
        return f"{self.prefix}:live:counter:{window}:{coin}"

    def live_volume(self, window: str) -> str:
        """ZSET: coin -> volume of its current faust window."""
        return f"{self.prefix}:live:volume:{window}"

    # -- API security (api/security.py) --------------------------------------------------
    def apikey(self, key_id: str) -> str:
        """HASH: one API key (sha256 hash, name, created, revoked)."""
        return f"{self.prefix}:apikey:{key_id}"

    def apikeys(self) -> str:
        """SET: ids of every API key ever created."""
        return f"{self.prefix}:apikeys"

    def ratelimit(self, key_id: str) -> str:
        """ZSET: request timestamps (ms) of one key within the sliding window."""
        return f"{self.prefix}:ratelimit:{key_id}"


# Atomic "newer or equal wins" write of one trend window: latest, time series, trending, coins.
# KEYS: latest, ts, trending, coins   ARGV: json, window_start iso, start epoch, coin, zscore, retention
_TREND_LUA = """
local cur = redis.call('GET', KEYS[1])
local newer = true
if cur then
  local ok, obj = pcall(cjson.decode, cur)
  if ok and type(obj) == 'table' and type(obj['window_start']) == 'string' then
    newer = obj['window_start'] <= ARGV[2]
  end
end
if newer then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
end
local start = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], start, start)
redis.call('ZADD', KEYS[2], start, ARGV[1])
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if top[2] then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(top[2]) - tonumber(ARGV[6])))
end
redis.call('SADD', KEYS[4], ARGV[4])
if newer then return 1 else return 0 end
"""

# KEYS: price latest   ARGV: json, event_time iso
_PRICE_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, obj = pcall(cjson.decode, cur)
  if ok and type(obj) == 'table' and type(obj['event_time']) == 'string' and obj['event_time'] > ARGV[2] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def _trend_args(keys: RedisKeys, window: TrendWindow) -> tuple[list[str], list[Any]]:
    payload = window.model_dump_json()
    start_iso = window.model_dump(mode="json")["window_start"]
    return (
        [
            keys.trend_latest(window.window, window.coin),
            keys.trend_ts(window.window, window.coin),
            keys.trending(window.window),
            keys.coins(),
        ],
        [
            payload,
            start_iso,
            int(window.window_start.timestamp()),
            window.coin,
            float(window.volume_zscore or 0.0),
            RETENTION_SECONDS[window.window],
        ],
    )


def _bounded_push(pipe: Any, key: str, payload: str, cap: int) -> None:
    pipe.lrem(key, 0, payload)
    pipe.lpush(key, payload)
    pipe.ltrim(key, 0, cap - 1)


# -- synchronous writers (Spark foreachBatch, tests, CLI) ----------------------------------------


def write_trend_windows(
    client: Any, prefix: str, windows: Iterable[TrendWindow], *, publish: bool = True
) -> int:
    """Write windows into latest/ts/trending/coins idempotently; returns how many became latest.

    Only ``source == "all"`` windows feed the views (per-source windows would overwrite
    the overall figure). ``client`` is a ``redis.Redis``.
    """
    keys = RedisKeys(prefix)
    script = client.register_script(_TREND_LUA)
    pipe = client.pipeline(transaction=False)
    count = 0
    for window in windows:
        if window.source != "all":
            continue
        k, a = _trend_args(keys, window)
        script(keys=k, args=a, client=pipe)
        if publish:
            pipe.publish(keys.live_trends(), window.model_dump_json())
        count += 1
    if not count:
        return 0
    results = pipe.execute()
    return sum(int(r) for r in results[:: 2 if publish else 1])


def record_scored_post(client: Any, prefix: str, post: ScoredPost, *, publish: bool = True) -> None:
    """Push a scored post onto ``posts:latest`` (deduplicated, capped) and publish it live."""
    keys = RedisKeys(prefix)
    payload = post.model_dump_json()
    pipe = client.pipeline(transaction=True)
    _bounded_push(pipe, keys.posts_latest(), payload, POSTS_LATEST_MAX)
    if publish:
        pipe.publish(keys.live_scored(), payload)
    pipe.execute()


def record_alert(client: Any, prefix: str, alert: Alert) -> None:
    """Push an alert onto ``alerts:latest`` (deduplicated, capped)."""
    keys = RedisKeys(prefix)
    pipe = client.pipeline(transaction=True)
    _bounded_push(pipe, keys.alerts_latest(), alert.model_dump_json(), ALERTS_LATEST_MAX)
    pipe.execute()


ALERT_MEMORY_S = 8 * 24 * 3600
"""How long an alert's id is remembered: longer than the longest window plus lateness."""


def _quality_ops(pipe: Any, keys: RedisKeys, report: DataQualityReport) -> None:
    payload = report.model_dump_json()
    pipe.set(keys.quality_latest(report.source), payload)
    pipe.sadd(keys.quality_sources(), report.source)
    _bounded_push(pipe, keys.quality_history(report.source), payload, QUALITY_HISTORY_MAX)


def write_quality_report(client: Any, prefix: str, report: DataQualityReport) -> None:
    """Latest report of the source, its capped history and the source set (replay-safe)."""
    pipe = client.pipeline(transaction=True)
    _quality_ops(pipe, RedisKeys(prefix), report)
    pipe.execute()


def alert_raised(client: Any, prefix: str, alert: Alert) -> bool:
    """Whether an alert with this ``source_id`` was raised already."""
    return bool(client.exists(RedisKeys(prefix).alert_seen(alert.source_id)))


def raise_alert_once(client: Any, prefix: str, alert: Alert) -> bool:
    """Record ``alert`` unless one with its ``source_id`` was raised before; True when new."""
    keys = RedisKeys(prefix)
    if not client.set(keys.alert_seen(alert.source_id), "1", nx=True, ex=ALERT_MEMORY_S):
        return False
    record_alert(client, prefix, alert)
    return True


def record_price(client: Any, prefix: str, tick: PriceTick) -> bool:
    """Set ``price:latest`` unless a newer tick is already there; True when written."""
    keys = RedisKeys(prefix)
    script = client.register_script(_PRICE_LUA)
    event_time = tick.model_dump(mode="json")["event_time"]
    return bool(script(keys=[keys.price_latest(tick.coin)], args=[tick.model_dump_json(), event_time]))


def delete_prefixed_keys(client: Any, prefix: str, *, chunk: int = 1000) -> int:
    """Delete every key under ``prefix`` (throw-away prefixes of tests and benchmarks).

    The Redis twin of ``cryptopulse.kafka.delete_prefixed_topics``; returns the count deleted.
    """
    deleted = 0
    batch: list[Any] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=chunk):
        batch.append(key)
        if len(batch) >= chunk:
            deleted += int(client.delete(*batch))
            batch = []
    if batch:
        deleted += int(client.delete(*batch))
    return deleted


# -- asynchronous writers (faust agents, redis.asyncio) ------------------------------------------


async def aalert_raised(client: Any, prefix: str, alert: Alert) -> bool:
    """Async twin of :func:`alert_raised`."""
    return bool(await client.exists(RedisKeys(prefix).alert_seen(alert.source_id)))


async def araise_alert_once(client: Any, prefix: str, alert: Alert) -> bool:
    """Async twin of :func:`raise_alert_once`."""
    keys = RedisKeys(prefix)
    if not await client.set(keys.alert_seen(alert.source_id), "1", nx=True, ex=ALERT_MEMORY_S):
        return False
    await arecord_alert(client, prefix, alert)
    return True


async def awrite_quality_report(client: Any, prefix: str, report: DataQualityReport) -> None:
    """Async twin of :func:`write_quality_report`."""
    pipe = client.pipeline(transaction=True)
    _quality_ops(pipe, RedisKeys(prefix), report)
    await pipe.execute()


async def awrite_trend_windows(
    client: Any, prefix: str, windows: Iterable[TrendWindow], *, publish: bool = True
) -> int:
    """Async twin of :func:`write_trend_windows` for a ``redis.asyncio.Redis``."""
    keys = RedisKeys(prefix)
    script = client.register_script(_TREND_LUA)
    pipe = client.pipeline(transaction=False)
    count = 0
    for window in windows:
        if window.source != "all":
            continue
        k, a = _trend_args(keys, window)
        await script(keys=k, args=a, client=pipe)
        if publish:
            pipe.publish(keys.live_trends(), window.model_dump_json())
        count += 1
    if not count:
        return 0
    results = await pipe.execute()
    return sum(int(r) for r in results[:: 2 if publish else 1])


async def arecord_scored_post(client: Any, prefix: str, post: ScoredPost, *, publish: bool = True) -> None:
    """Async twin of :func:`record_scored_post`."""
    keys = RedisKeys(prefix)
    payload = post.model_dump_json()
    pipe = client.pipeline(transaction=True)
    _bounded_push(pipe, keys.posts_latest(), payload, POSTS_LATEST_MAX)
    if publish:
        pipe.publish(keys.live_scored(), payload)
    await pipe.execute()


async def arecord_alert(client: Any, prefix: str, alert: Alert) -> None:
    """Async twin of :func:`record_alert`."""
    keys = RedisKeys(prefix)
    pipe = client.pipeline(transaction=True)
    _bounded_push(pipe, keys.alerts_latest(), alert.model_dump_json(), ALERTS_LATEST_MAX)
    await pipe.execute()


async def arecord_price(client: Any, prefix: str, tick: PriceTick) -> bool:
    """Async twin of :func:`record_price`."""
    keys = RedisKeys(prefix)
    script = client.register_script(_PRICE_LUA)
    event_time = tick.model_dump(mode="json")["event_time"]
    return bool(await script(keys=[keys.price_latest(tick.coin)], args=[tick.model_dump_json(), event_time]))


__all__ = [
    "ALERTS_LATEST_MAX",
    "ALERT_MEMORY_S",
    "POSTS_LATEST_MAX",
    "QUALITY_HISTORY_MAX",
    "RETENTION_SECONDS",
    "WINDOW_SECONDS",
    "RedisKeys",
    "aalert_raised",
    "alert_raised",
    "araise_alert_once",
    "arecord_alert",
    "arecord_price",
    "arecord_scored_post",
    "awrite_quality_report",
    "awrite_trend_windows",
    "raise_alert_once",
    "record_alert",
    "record_price",
    "record_scored_post",
    "write_quality_report",
    "write_trend_windows",
]
