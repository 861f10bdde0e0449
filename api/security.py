"""API keys (stored hashed in Redis, optionally with scopes) and sliding-window rate limits.

A key looks like ``cpk_<id>_<secret>``: the id locates the record
(``{prefix}:apikey:{id}``) without scanning, and only ``sha256(key)`` is stored, so a
Redis dump never leaks usable keys. Verified keys are cached in-process for
``api.key_cache_s`` seconds; a revocation therefore takes effect within that time.

A key without scopes reads every view; the ``admin`` scope also opens the Kafka view
(raw texts with author names, dead letters with their original payloads), and the
``label`` scope lets it send human labels (``POST /v1/feedback``) that feed training.

The rate limit is a sliding-window log: one sorted set per caller (an API key, or the
client address while auth is off) of request times in milliseconds (Redis server time,
so every worker agrees), trimmed and counted atomically by a Lua script.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api.scopes import Scope
from schemas.redis_keys import RedisKeys

KEY_RE = re.compile(r"^cpk_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{20,100})$")


@dataclass(frozen=True)
class ApiKey:
    """A key's public record (never the secret)."""

    key_id: str
    name: str
    created: datetime
    revoked: bool
    rate_limit_per_minute: int | None = None
    scopes: frozenset[Scope] = frozenset()


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key, or (auth disabled) a client address as ``ip:<address>``.

    ``key_id`` names the caller for rate limits and stream caps.
    """

    key_id: str
    name: str
    rate_limit_per_minute: int | None = None
    scopes: frozenset[Scope] = frozenset()


def anonymous(address: str) -> Principal:
    """The caller while auth is off, known only by its address (no key id has a colon)."""
    return Principal(key_id=f"ip:{address}", name="anonymous")


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def _record(key_id: str, raw: dict[Any, Any]) -> ApiKey:
    data = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }
    limit = data.get("rate_limit_per_minute")
    known = {scope.value for scope in Scope}
    return ApiKey(
        key_id=key_id,
        name=data.get("name", ""),
        created=datetime.fromisoformat(data.get("created", "1970-01-01T00:00:00+00:00")),
        revoked=data.get("revoked") == "1",
        rate_limit_per_minute=int(limit) if limit else None,
        # Unknown names (a newer release's scopes) grant nothing here.
        scopes=frozenset(Scope(s) for s in data.get("scopes", "").split(",") if s in known),
    )


# -- management (sync: CLI and tests) ---------------------------------------------------------


def create_api_key(
    client: Any,
    prefix: str,
    name: str,
    *,
    rate_limit_per_minute: int | None = None,
    scopes: frozenset[Scope] = frozenset(),
) -> tuple[str, ApiKey]:
    """Create a key; returns (the key, shown once, and its record)."""
    keys = RedisKeys(prefix)
    key_id = secrets.token_hex(6)
    key = f"cpk_{key_id}_{secrets.token_urlsafe(32)}"
    created = datetime.now(UTC).replace(microsecond=0)
    mapping = {"hash": hash_key(key), "name": name, "created": created.isoformat(), "revoked": "0"}
    if rate_limit_per_minute:
        mapping["rate_limit_per_minute"] = str(rate_limit_per_minute)
    if scopes:
        mapping["scopes"] = ",".join(sorted(scopes))
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.apikey(key_id), mapping=mapping)
    pipe.sadd(keys.apikeys(), key_id)
    pipe.execute()
    return key, ApiKey(key_id, name, created, False, rate_limit_per_minute, frozenset(scopes))


def list_api_keys(client: Any, prefix: str) -> list[ApiKey]:
    keys = RedisKeys(prefix)
    out = []
    for raw_id in sorted(client.smembers(keys.apikeys())):
        key_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
        raw = client.hgetall(keys.apikey(key_id))
        if raw:
            out.append(_record(key_id, raw))
    return sorted(out, key=lambda k: k.created)


def revoke_api_key(client: Any, prefix: str, key_id: str) -> bool:
    """Mark a key revoked (kept for audit); False when no such key."""
    keys = RedisKeys(prefix)
    if not client.exists(keys.apikey(key_id)):
        return False
    client.hset(keys.apikey(key_id), "revoked", "1")
    return True


# -- request path (async) ---------------------------------------------------------------------


class KeyVerifier:
    """Checks presented keys against Redis, caching positive and negative answers briefly."""

    def __init__(self, client: Any, prefix: str, cache_s: float) -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def verify(self, key: str) -> Principal | None:
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached and cached[0] > now:
            return cached[1]
        principal = await self.lookup(key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self.cache_s, principal)
        return principal

    async def lookup(self, key: str) -> Principal | None:
        """The key's principal straight from Redis (no cache); None when unknown or revoked."""
        match = KEY_RE.match(key)
        if match is None:
            return None
        raw = await self.client.hgetall(self.keys.apikey(match["id"]))
        if not raw:
            return None
        stored = raw.get(b"hash", raw.get("hash", b""))
        stored = stored.decode() if isinstance(stored, bytes) else stored
        if not hmac.compare_digest(stored, hash_key(key)):
            return None
        record = _record(match["id"], raw)
        if record.revoked:
            return None
        return Principal(record.key_id, record.name, record.rate_limit_per_minute, record.scopes)


_RATE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = window
if oldest[2] then retry = tonumber(oldest[2]) + window - now end
return {0, 0, retry}
"""


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int


class RateLimiter:
    """Sliding-window log limiter, atomic in Redis (one round trip per request)."""

    def __init__(self, client: Any, prefix: str, window_s: int) -> None:
        self.keys = RedisKeys(prefix)
        self.window_ms = window_s * 1000
        self._script = client.register_script(_RATE_LUA)

    async def hit(self, key_id: str, limit: int) -> RateDecision:
        allowed, remaining, retry_ms = await self._script(
            keys=[self.keys.ratelimit(key_id)], args=[self.window_ms, limit, secrets.token_hex(4)]
        )
        return RateDecision(
            allowed=bool(allowed),
            limit=limit,
            remaining=int(remaining),
            retry_after_s=max(1, -(-int(retry_ms) // 1000)) if not allowed else 0,
        )
