"""Every write to the materialized views in Redis, batched with a flush contract.

Writers queue updates with the ``add_*`` / ``replace_*`` / ``remove_*`` methods, which
do no I/O, and send them with ``flush()``: one pipeline per flush, in the order queued.
A flush drops its batch whether or not it succeeds (the idea of quix-streams' sink base
class): the caller's source of truth replays what was lost (Spark re-runs a failed
micro-batch; the faust worker's live view is best effort), so a batch is never sent
twice by accident nor left half-queued for the next flush.

Every update is idempotent, so a replayed batch leaves Redis byte-for-byte identical:

* ``trend:latest`` is replaced only by a window that starts at the same time or later
  (compared on the fixed-width ISO-8601 ``window_start``);
* ``trend:ts`` and the Spark series history replace the member with the same score,
  then trim by retention relative to their newest member (not the wall clock);
* the capped lists (``posts:latest``, ``alerts:latest``, quality history) remove an
  equal member before pushing it;
* ``price:latest`` keeps the newest tick by ``event_time``;
* a review candidate merges with the stored one of the same post (higher own priority,
  union of reasons, the challenger's part once), so a replayed offer changes nothing.

The shadow counters (``count_shadow``) are the exception: ``HINCRBY`` adds, so their
caller (the worker's shadow agent) skips source ids it has counted already.

A flush is one MULTI/EXEC when any queued update spans several commands that must land
together (bounded pushes, counters). Updates that are one Lua script each (trend windows,
history points, prices, the backfill's replacements) are atomic on their own and are
pipelined without MULTI, so a large Spark batch does not hold readers up until it ends.
Batches of many similar updates (trend windows, backfill replacements) are one script call
each, their arguments one JSON document: redis-py spends ~40 us of Python packing and
parsing per command, more than Redis spends running the update.

:class:`RedisViewWriter` (``redis.Redis``: Spark, tests, benchmarks) and
:class:`AsyncRedisViewWriter` (``redis.asyncio.Redis``: the faust worker) share the
queueing, keys and Lua scripts; they differ only in how a batch is sent. Key names,
caps and TTLs come from :mod:`schemas.redis_keys`; ``docs/redis-keys.md`` documents them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis

from schemas.events import Alert, DataQualityReport, PriceTick, ScoredPost, TrendWindow, WindowSize, iso_utc
from schemas.redis_keys import (
    ALERT_MEMORY_S,
    ALERTS_LATEST_MAX,
    POSTS_LATEST_MAX,
    QUALITY_HISTORY_MAX,
    RETENTION_SECONDS,
    REVIEW_POST_TTL_S,
    REVIEW_QUEUE_MAX,
    SHADOW_STATS_TTL_S,
    RedisKeys,
    live_counter_ttl,
)

# -- Lua -----------------------------------------------------------------------------------------
# Scripts cannot call each other, so the shared steps are text spliced into each script.


def _replace_at_score(key: str, score: str, member: str) -> str:
    """Lua: ``member`` becomes the only member of ``key`` at ``score``."""
    return f"""
local score = tonumber({score})
redis.call('ZREMRANGEBYSCORE', {key}, score, score)
redis.call('ZADD', {key}, score, {member})
"""


def _trim_from_newest(key: str, retention: str) -> str:
    """Lua: drop the members of ``key`` scored more than ``retention`` below its newest one."""
    return f"""
local top = redis.call('ZRANGE', {key}, -1, -1, 'WITHSCORES')
if top[2] then
  redis.call('ZREMRANGEBYSCORE', {key}, '-inf', '(' .. (tonumber(top[2]) - tonumber({retention})))
end
"""


# "Newer or equal wins" write of trend windows: latest, time series, trending, coins.
# KEYS: every key the entries name (each once).   ARGV[1]: JSON array of entries
#   [latest, ts, trending, coins (indexes into KEYS), json, window_start iso, start epoch s,
#    coin, zscore, retention s]; numbers as strings, so Redis parses them exactly as sent.
# ARGV[2]: the live:trends channel, or '' to publish nothing.
# One call per batch of windows, not one per window: redis-py packs and parses a command in
# ~40 us of Python, more than the script's work. The script applies the entries in order
# but writes each series' latest (and its trending score) once, after the loop, and trims
# each time series once: the same end state as one window at a time, since a series' newest
# start only grows. Returns how many windows became (or stayed) the latest of their series.
TRENDS_UPSERT_LUA = (
    """
local updated = 0
local held = {}    -- latest key -> window_start it holds now (false: none, or unreadable)
local winner = {}  -- latest key -> the entry that is its latest after this call
local trim = {}    -- ts key -> retention
local added = {}   -- coins already added to the coin set by this call
for _, e in ipairs(cjson.decode(ARGV[1])) do
  local latest, ts = KEYS[e[1]], KEYS[e[2]]
  if held[latest] == nil then
    held[latest] = false
    local cur = redis.call('GET', latest)
    if cur then
      local ok, obj = pcall(cjson.decode, cur)
      if ok and type(obj) == 'table' and type(obj['window_start']) == 'string' then
        held[latest] = obj['window_start']
      end
    end
  end
  if held[latest] == false or held[latest] <= e[6] then
    held[latest] = e[6]
    winner[latest] = e
    updated = updated + 1
  end
"""
    + _replace_at_score("ts", "e[7]", "e[5]")
    + """
  trim[ts] = e[10]
  if not added[e[8]] then
    redis.call('SADD', KEYS[e[4]], e[8])
    added[e[8]] = true
  end
  if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], e[5]) end
end
for latest, e in pairs(winner) do
  redis.call('SET', latest, e[5])
  redis.call('ZADD', KEYS[e[3]], e[9], e[8])
end
for ts, retention in pairs(trim) do
"""
    + _trim_from_newest("ts", "retention")
    + """
end
return updated
"""
)

# KEYS: price latest   ARGV: json, event_time iso
PRICE_LUA = """
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

# One point of a Spark series history.   KEYS: zset   ARGV: score, member, retention seconds
HISTORY_POINT_LUA = (
    _replace_at_score("KEYS[1]", "ARGV[1]", "ARGV[2]")
    + _trim_from_newest("KEYS[1]", "ARGV[3]")
    + "return 1\n"
)


# Backfill: the points of each series in [lo, hi] become exactly the given ones, then the
# series is trimmed by retention.   KEYS: series zsets   ARGV[1], ARGV[2]: lo, hi (seconds)
# ARGV[3]: JSON array aligned with KEYS: [retention s, start s, member, start s, member, ...]
HISTORY_REPLACE_LUA = (
    """
local lo, hi = ARGV[1], ARGV[2]
for i, e in ipairs(cjson.decode(ARGV[3])) do
  local key = KEYS[i]
  redis.call('ZREMRANGEBYSCORE', key, lo, hi)
  for j = 2, #e, SLICE do
    redis.call('ZADD', key, unpack(e, j, math.min(j + SLICE - 1, #e)))
  end
"""
    + _trim_from_newest("key", "e[1]")
    + """
end
return #KEYS
"""
)

# Backfill: each window's components hash becomes exactly the given fields, with its TTL.
# KEYS: hashes   ARGV[1]: JSON array aligned with KEYS: [ttl s, field, json, field, json, ...]
COMPONENTS_REPLACE_LUA = """
for i, e in ipairs(cjson.decode(ARGV[1])) do
  local key = KEYS[i]
  redis.call('DEL', key)
  if #e > 1 then
    for j = 2, #e, SLICE do
      redis.call('HSET', key, unpack(e, j, math.min(j + SLICE - 1, #e)))
    end
    redis.call('EXPIRE', key, e[1])
  end
end
return #KEYS
"""

TREND_WINDOWS_PER_CALL = 500
"""Trend windows per script call: one call holds Redis for a few milliseconds at most."""

_LUA_SLICE = 400
"""Values per ZADD/HSET inside a script (even: pairs stay whole); ``unpack`` of a whole
series could pass Lua's C-stack limit (~8,000 values)."""

POSTS_PUSH_LUA = """
-- KEYS[1]: posts:latest (newest first). ARGV[1]: its cap; ARGV[2]: the live:scored channel,
-- or '' to publish nothing; ARGV[3..]: the posts' JSON, oldest first.
-- Per post: LREM + LPUSH (a replayed post moves to the front, never doubles) and PUBLISH;
-- one LTRIM at the end leaves the same list as trimming after every push.
for i = 3, #ARGV do
  redis.call('LREM', KEYS[1], 0, ARGV[i])
  redis.call('LPUSH', KEYS[1], ARGV[i])
  if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[i]) end
end
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
return #ARGV - 2
"""

# -- review queue and shadow counters (the learning loop) ------------------------------------------

REVIEW_LOW_CONFIDENCE = "low_confidence"
REVIEW_MEMBERS_DISAGREE = "members_disagree"
REVIEW_CHALLENGER_DISAGREES = "challenger_disagrees"
REVIEW_COIN_SHIFT = "coin_shift"
REVIEW_REASONS: tuple[str, ...] = (
    REVIEW_LOW_CONFIDENCE,
    REVIEW_MEMBERS_DISAGREE,
    REVIEW_CHALLENGER_DISAGREES,
    REVIEW_COIN_SHIFT,
)
"""Why a post is worth a person's label, in the order a candidate lists them."""
REVIEW_CHALLENGER_WEIGHT = 1.0
"""Priority a challenger disagreement adds: the challenger's verdict arrives after the
champion's, so the script adds it to (or takes it from) a stored candidate's priority."""

SHADOW_RECORDS = "records"
SHADOW_AGREE = "agree"
SHADOW_FEEDBACK = "feedback"
SHADOW_CHAMPION_CORRECT = "champion_correct"
SHADOW_CHALLENGER_CORRECT = "challenger_correct"


def shadow_label_field(model: str, label: str) -> str:
    """The ``shadow:stats`` field counting ``model``'s (``champion``/``challenger``) ``label`` verdicts."""
    return f"{model}_{label}"


# Offer one post to the review queue.  KEYS: queue, post, done
# ARGV: source_id, ScoredPost json, base priority, reasons csv, challenger label or '',
#       challenger weight, cap, ttl, post key prefix (trimmed members' posts are deleted)
# A stored candidate of the same post is merged: the higher base priority, the union of the
# reasons, and the challenger's label whichever offer brought it (the champion's offer and
# the shadow agent's may land in either order). A post with feedback is never queued; a
# full queue keeps a new post only if it outranks the lowest one, which then falls off.
REVIEW_OFFER_LUA = (
    "local ORDER = {"
    + ", ".join(f"'{reason}'" for reason in REVIEW_REASONS)
    + "}\n"
    + f"local CHALLENGER_REASON = '{REVIEW_CHALLENGER_DISAGREES}'\n"
    + """
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return 0 end
local base = tonumber(ARGV[3])
local challenger = ARGV[5]
local weight = tonumber(ARGV[6])
local cap = tonumber(ARGV[7])
local has = {}
for reason in string.gmatch(ARGV[4], '[^,]+') do has[reason] = true end
local cur = redis.call('GET', KEYS[2])
if cur then
  local ok, old = pcall(cjson.decode, cur)
  if ok and type(old) == 'table' then
    local old_base = tonumber(old['priority']) or 0
    if type(old['challenger_label']) == 'string' then
      old_base = old_base - weight
      if challenger == '' then challenger = old['challenger_label'] end
    end
    if old_base > base then base = old_base end
    if type(old['reasons']) == 'table' then
      for _, reason in ipairs(old['reasons']) do has[reason] = true end
    end
  end
end
local priority = base
if challenger ~= '' then
  priority = base + weight
  has[CHALLENGER_REASON] = true
end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= cap then
  local low = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if low[2] and tonumber(low[2]) >= priority then return 0 end
end
local reasons = {}
for _, reason in ipairs(ORDER) do
  if has[reason] then reasons[#reasons + 1] = cjson.encode(reason) end
end
local label = 'null'
if challenger ~= '' then label = cjson.encode(challenger) end
local doc = string.sub(ARGV[2], 1, -2) .. ',"priority":' .. string.format('%.6f', priority)
  .. ',"reasons":[' .. table.concat(reasons, ',') .. '],"challenger_label":' .. label .. '}'
redis.call('SET', KEYS[2], doc, 'EX', tonumber(ARGV[8]))
redis.call('ZADD', KEYS[1], priority, ARGV[1])
local over = redis.call('ZCARD', KEYS[1]) - cap
if over > 0 then
  local gone = redis.call('ZPOPMIN', KEYS[1], over)
  for i = 1, #gone, 2 do redis.call('DEL', ARGV[9] .. gone[i]) end
end
return 1
"""
)

_SCRIPTS: dict[str, str] = {
    "trends": TRENDS_UPSERT_LUA,
    "history_replace": HISTORY_REPLACE_LUA.replace("SLICE", str(_LUA_SLICE)),
    "components_replace": COMPONENTS_REPLACE_LUA.replace("SLICE", str(_LUA_SLICE)),
    "price": PRICE_LUA,
    "history": HISTORY_POINT_LUA,
    "posts": POSTS_PUSH_LUA,
    "review": REVIEW_OFFER_LUA,
}


# -- queued operations ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Command:
    """A plain Redis command, queued as ``pipe.<method>(*args, **kwargs)``."""

    method: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _ScriptCall:
    """One run of a Lua script of ``_SCRIPTS``; its integer reply (how many of its updates
    took effect) adds to the FlushResult counter named by ``tally``."""

    script: str
    keys: list[str]
    args: list[Any]
    tally: str | None = None


_Op = _Command | _ScriptCall


class _KeySlots:
    """The keys one script call names, each once, in ``KEYS`` order."""

    def __init__(self) -> None:
        self._slots: dict[str, int] = {}

    def slot(self, key: str) -> int:
        """``key``'s 1-based place in ``KEYS`` (Lua indexes from 1)."""
        return self._slots.setdefault(key, len(self._slots) + 1)

    @property
    def names(self) -> list[str]:
        return list(self._slots)


@dataclass(frozen=True)
class FlushResult:
    """What one flush did."""

    commands: int = 0
    latest_updated: int = 0
    """Trend windows that became (or stayed) the latest of their series."""
    prices_written: int = 0
    """Price ticks that were not older than the stored one."""
    review_queued: int = 0
    """Review candidates written (the rest had feedback or were outranked by a full queue)."""


def _tally(ops: Sequence[_Op], replies: Sequence[Any]) -> FlushResult:
    counts = {"latest_updated": 0, "prices_written": 0, "review_queued": 0}
    for op, reply in zip(ops, replies, strict=True):
        if isinstance(op, _ScriptCall) and op.tally is not None:
            counts[op.tally] += int(reply)
    return FlushResult(commands=len(ops), **counts)


def _bounded_push(key: str, payload: str, cap: int) -> list[_Op]:
    """Newest-first capped list without duplicates: a replayed payload moves, never doubles."""
    return [
        _Command("lrem", (key, 0, payload)),
        _Command("lpush", (key, payload)),
        _Command("ltrim", (key, 0, cap - 1)),
    ]


class LiveCounter(Protocol):
    """A faust tumbling-window counter after a micro-batch (``stream_processors.live``)."""

    @property
    def coin(self) -> str: ...
    @property
    def window(self) -> str: ...
    @property
    def window_start(self) -> float: ...
    @property
    def window_end(self) -> float: ...
    @property
    def volume(self) -> int: ...
    @property
    def score_sum(self) -> float: ...
    def as_dict(self) -> dict[str, Any]:
        """The JSON published on ``live:counters`` (with the rounded ``mean_score``)."""
        ...


# -- writers -------------------------------------------------------------------------------------


class _ViewBatch:
    """The pending batch and the update builders both writers share (no I/O here)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.keys = RedisKeys(prefix)
        self._ops: list[_Op] = []
        self._atomic = False

    @property
    def pending(self) -> int:
        """Commands queued since the last flush (callers flush large batches in chunks)."""
        return len(self._ops)

    def discard(self) -> None:
        """Drop the pending batch unsent (after a failure while building it)."""
        self._ops, self._atomic = [], False

    def _queue(self, ops: Iterable[_Op], *, atomic: bool) -> None:
        self._ops.extend(ops)
        self._atomic = self._atomic or atomic

    def _take(self) -> tuple[list[_Op], bool]:
        """The pending batch, which is no longer pending: a failed flush does not resend it."""
        ops, atomic = self._ops, self._atomic
        self.discard()
        return ops, atomic

    # -- materialized views -------------------------------------------------------------------
    def add_trend_windows(self, windows: Iterable[TrendWindow], *, publish: bool = True) -> int:
        """Queue windows for latest/ts/trending/coins (and ``live:trends``); returns how many.

        Only ``source == "all"`` windows feed the views: per-source windows would overwrite
        the overall figure (they reach subscribers on the trends topic instead). The
        windows go in script calls of up to :data:`TREND_WINDOWS_PER_CALL` each, applied in
        the order given.
        """
        overall = [window for window in windows if window.source == "all"]
        channel = self.keys.live_trends() if publish else ""
        for begin in range(0, len(overall), TREND_WINDOWS_PER_CALL):
            keys = _KeySlots()
            entries = [
                [
                    keys.slot(self.keys.trend_latest(window.window, window.coin)),
                    keys.slot(self.keys.trend_ts(window.window, window.coin)),
                    keys.slot(self.keys.trending(window.window)),
                    keys.slot(self.keys.coins()),
                    window.model_dump_json(),
                    iso_utc(window.window_start),
                    str(int(window.window_start.timestamp())),
                    window.coin,
                    repr(float(window.volume_zscore or 0.0)),
                    str(RETENTION_SECONDS[window.window]),
                ]
                for window in overall[begin : begin + TREND_WINDOWS_PER_CALL]
            ]
            call = _ScriptCall("trends", keys.names, [json.dumps(entries), channel], tally="latest_updated")
            self._queue([call], atomic=False)
        return len(overall)

    def remove_trend_windows(self, window: str, coin: str, starts: Iterable[float]) -> None:
        """Queue the removal of ``trend:ts`` windows by start (backfill: no longer computed)."""
        key = self.keys.trend_ts(window, coin)
        self._queue((_Command("zremrangebyscore", (key, start, start)) for start in starts), atomic=False)

    def add_price(self, tick: PriceTick) -> None:
        """Queue ``price:latest`` of the tick's coin, kept unless a newer tick is stored."""
        event_time = tick.model_dump(mode="json")["event_time"]
        call = _ScriptCall(
            "price",
            [self.keys.price_latest(tick.coin)],
            [tick.model_dump_json(), event_time],
            tally="prices_written",
        )
        self._queue([call], atomic=False)

    def add_scored_posts(self, posts: Iterable[ScoredPost], *, publish: bool = True) -> None:
        """Queue posts onto ``posts:latest`` (deduplicated, capped) and ``live:scored``.

        One script call for the whole batch: four commands per post (LREM, LPUSH, LTRIM,
        PUBLISH) cost the stream worker ~60 us of redis-py packing and reply parsing per post.
        """
        payloads = [post.model_dump_json() for post in posts]
        if not payloads:
            return
        channel = self.keys.live_scored() if publish else ""
        args = [POSTS_LATEST_MAX, channel, *payloads]
        self._queue([_ScriptCall("posts", [self.keys.posts_latest()], args)], atomic=True)

    def add_alert(self, alert: Alert) -> None:
        """Queue an alert onto ``alerts:latest`` (deduplicated, capped); see ``raise_alert_once``."""
        self._queue(self._alert_ops(alert), atomic=True)

    def _alert_ops(self, alert: Alert) -> list[_Op]:
        return _bounded_push(self.keys.alerts_latest(), alert.model_dump_json(), ALERTS_LATEST_MAX)

    def add_quality_report(self, report: DataQualityReport) -> None:
        """Queue the source's latest report, its capped history and the source set."""
        payload = report.model_dump_json()
        ops: list[_Op] = [
            _Command("set", (self.keys.quality_latest(report.source), payload)),
            _Command("sadd", (self.keys.quality_sources(), report.source)),
            *_bounded_push(self.keys.quality_history(report.source), payload, QUALITY_HISTORY_MAX),
        ]
        self._queue(ops, atomic=True)

    def add_live_counter(self, counter: LiveCounter, *, updated: float) -> None:
        """Queue faust's counter mirror (hash with TTL, volume zset) and its ``live:counters``
        message. The hash holds the table's current value (HSET, not HINCRBY), so a replay
        after a restart rewrites the same numbers."""
        data = counter.as_dict()
        key = self.keys.live_counter(counter.window, counter.coin)
        mapping = {
            "window_start": counter.window_start,
            "window_end": counter.window_end,
            "volume": counter.volume,
            "score_sum": counter.score_sum,
            "mean_score": data["mean_score"],
            "updated": updated,
        }
        ops: list[_Op] = [
            _Command("hset", (key,), {"mapping": mapping}),
            _Command("expire", (key, live_counter_ttl(counter.window_end - counter.window_start))),
            _Command("zadd", (self.keys.live_volume(counter.window), {counter.coin: counter.volume})),
            _Command("publish", (self.keys.live_counters(), json.dumps(data))),
        ]
        self._queue(ops, atomic=True)

    # -- learning loop ---------------------------------------------------------------------------
    def add_review_candidate(
        self,
        post: ScoredPost,
        priority: float,
        reasons: Iterable[str],
        challenger_label: str | None = None,
        *,
        cap: int = REVIEW_QUEUE_MAX,
    ) -> None:
        """Queue the offer of ``post`` to the review queue (``review:queue`` and ``review:post``).

        ``priority`` is the post's own (without the challenger's part): the script adds
        :data:`REVIEW_CHALLENGER_WEIGHT` when ``challenger_label`` (the challenger's
        dissenting verdict) is given now or was stored before. Skipped when the post has
        feedback (``review:done``) or a full queue (``cap`` members) holds only higher
        priorities; a new member of a full queue pushes the lowest one (and its post) out.
        """
        reasons = list(reasons)
        unknown = set(reasons) - set(REVIEW_REASONS)
        if unknown:
            raise ValueError(f"unknown review reasons {sorted(unknown)}; expected some of {REVIEW_REASONS}")
        call = _ScriptCall(
            "review",
            [self.keys.review_queue(), self.keys.review_post(post.source_id), self.keys.review_done()],
            [
                post.source_id,
                post.model_dump_json(),
                round(float(priority), 6),
                ",".join(reasons),
                challenger_label or "",
                REVIEW_CHALLENGER_WEIGHT,
                int(cap),
                REVIEW_POST_TTL_S,
                self.keys.review_post(""),
            ],
            tally="review_queued",
        )
        self._queue([call], atomic=False)

    def _shadow_count_ops(self, champion: str, challenger: str, counts: Mapping[str, int]) -> list[_Op]:
        key = self.keys.shadow_stats(champion, challenger)
        ops: list[_Op] = [_Command("hincrby", (key, name, int(n))) for name, n in counts.items() if n]
        return [*ops, _Command("expire", (key, SHADOW_STATS_TTL_S)), _Command("hgetall", (key,))]

    # -- Spark trend job state ------------------------------------------------------------------
    def add_window_components(self, window: str, start_ms: int, fields: Mapping[str, str]) -> None:
        """Queue HSETs of one window's ``source|coin`` sums. Spark emits full aggregates,
        not deltas, so the same batch twice leaves the hash as it was."""
        if not fields:
            return
        key = self.keys.spark_components(window, start_ms)
        self._queue(
            [_Command("hset", (key,), {"mapping": dict(fields)}), _components_ttl(key, window)], atomic=True
        )

    def replace_window_components(self, windows: Iterable[tuple[str, int, Mapping[str, str]]]) -> None:
        """Queue (backfill): each window's components, given as ``(window, start_ms, fields)``,
        become exactly ``fields``; one script call for them all."""
        keys: list[str] = []
        entries: list[list[Any]] = []
        for window, start_ms, fields in windows:
            keys.append(self.keys.spark_components(window, start_ms))
            entries.append([_components_ttl_s(window), *itertools.chain.from_iterable(fields.items())])
        if keys:
            self._queue([_ScriptCall("components_replace", keys, [json.dumps(entries)])], atomic=False)

    def add_history_point(self, window: str, coin: str, source: str, start_s: int, member: str) -> None:
        """Queue one point of a series history: replaces the point at ``start_s``, then trims."""
        call = _ScriptCall(
            "history",
            [self.keys.spark_history(window, coin, source)],
            [start_s, member, RETENTION_SECONDS[WindowSize(window)]],
        )
        self._queue([call], atomic=False)

    def replace_history(
        self, lo_s: int, hi_s: int, series: Iterable[tuple[str, str, str, Mapping[str, int]]]
    ) -> None:
        """Queue (backfill): the points in [lo_s, hi_s] of each series, given as ``(window,
        coin, source, members)`` (member -> start seconds), become exactly ``members``, then
        the series is trimmed by retention; one script call for them all."""
        keys: list[str] = []
        entries: list[list[Any]] = []
        for window, coin, source, members in series:
            keys.append(self.keys.spark_history(window, coin, source))
            points = itertools.chain.from_iterable((start, member) for member, start in members.items())
            entries.append([RETENTION_SECONDS[WindowSize(window)], *points])
        if keys:
            call = _ScriptCall("history_replace", keys, [int(lo_s), int(hi_s), json.dumps(entries)])
            self._queue([call], atomic=False)


def _components_ttl_s(window: str) -> int:
    # Components are needed while late data can still arrive; keep them as long as the view.
    return RETENTION_SECONDS[WindowSize(window)]


def _components_ttl(key: str, window: str) -> _Command:
    return _Command("expire", (key, _components_ttl_s(window)))


class RedisViewWriter(_ViewBatch):
    """Writes the views through a ``redis.Redis`` (Spark foreachBatch, backfill, tests, benchmarks)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        super().__init__(prefix)
        self.client = client
        self._scripts = {name: client.register_script(text) for name, text in _SCRIPTS.items()}

    def flush(self) -> FlushResult:
        """Send the pending batch in one pipeline; it is dropped even when sending fails."""
        ops, atomic = self._take()
        if not ops:
            return FlushResult()
        return _tally(ops, self._send(ops, atomic=atomic))

    def _send(self, ops: Sequence[_Op], *, atomic: bool) -> list[Any]:
        pipe = self.client.pipeline(transaction=atomic)
        for op in ops:
            if isinstance(op, _ScriptCall):
                self._scripts[op.script](keys=op.keys, args=op.args, client=pipe)
            else:
                getattr(pipe, op.method)(*op.args, **op.kwargs)
        return pipe.execute()

    def alert_raised(self, alert: Alert) -> bool:
        """Whether an alert with this ``source_id`` was raised already."""
        return bool(self.client.exists(self.keys.alert_seen(alert.source_id)))

    def raise_alert_once(self, alert: Alert) -> bool:
        """Remember ``alert`` and list it in ``alerts:latest`` unless one with its
        ``source_id`` was raised before; True when new. Sent at once, apart from the batch."""
        if not self.client.set(self.keys.alert_seen(alert.source_id), "1", nx=True, ex=ALERT_MEMORY_S):
            return False
        self._send(self._alert_ops(alert), atomic=True)
        return True

    def show_alert(self, alert: Alert) -> bool:
        """Publish ``alert`` on ``live:alerts`` (the SSE stream: every delivery attempt, a
        restarted consumer may show it again) and list it once in ``alerts:latest``; True when new."""
        self._send([_Command("publish", (self.keys.live_alerts(), alert.model_dump_json()))], atomic=False)
        return self.raise_alert_once(alert)

    def count_shadow(self, champion: str, challenger: str, counts: Mapping[str, int]) -> dict[str, int]:
        """Add ``counts`` to the pair's ``shadow:stats`` hash (its TTL restarts); returns the
        totals after the update. Sent at once, apart from the batch: the caller needs them."""
        return _int_hash(self._send(self._shadow_count_ops(champion, challenger, counts), atomic=True)[-1])

    def shadow_stats(self, champion: str, challenger: str) -> dict[str, int]:
        """The pair's shadow counters (empty when none were kept)."""
        return _int_hash(self.client.hgetall(self.keys.shadow_stats(champion, challenger)))


class AsyncRedisViewWriter(_ViewBatch):
    """Writes the views through a ``redis.asyncio.Redis`` (the faust worker's live view).

    The ``add_*`` methods never yield and ``flush`` takes the batch before its first
    await, so tasks sharing one writer cannot send each other's half-built batches.
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        super().__init__(prefix)
        self.client = client
        self._scripts = {name: client.register_script(text) for name, text in _SCRIPTS.items()}

    async def flush(self) -> FlushResult:
        """Send the pending batch in one pipeline; it is dropped even when sending fails."""
        ops, atomic = self._take()
        if not ops:
            return FlushResult()
        return _tally(ops, await self._send(ops, atomic=atomic))

    async def _send(self, ops: Sequence[_Op], *, atomic: bool) -> list[Any]:
        pipe = self.client.pipeline(transaction=atomic)
        for op in ops:
            if isinstance(op, _ScriptCall):
                await self._scripts[op.script](keys=op.keys, args=op.args, client=pipe)
            else:
                getattr(pipe, op.method)(*op.args, **op.kwargs)
        return await pipe.execute()

    async def alert_raised(self, alert: Alert) -> bool:
        """Whether an alert with this ``source_id`` was raised already."""
        return bool(await self.client.exists(self.keys.alert_seen(alert.source_id)))

    async def raise_alert_once(self, alert: Alert) -> bool:
        """Async twin of :meth:`RedisViewWriter.raise_alert_once`."""
        if not await self.client.set(self.keys.alert_seen(alert.source_id), "1", nx=True, ex=ALERT_MEMORY_S):
            return False
        await self._send(self._alert_ops(alert), atomic=True)
        return True

    async def count_shadow(self, champion: str, challenger: str, counts: Mapping[str, int]) -> dict[str, int]:
        """Async twin of :meth:`RedisViewWriter.count_shadow`."""
        replies = await self._send(self._shadow_count_ops(champion, challenger, counts), atomic=True)
        return _int_hash(replies[-1])

    async def shadow_stats(self, champion: str, challenger: str) -> dict[str, int]:
        """Async twin of :meth:`RedisViewWriter.shadow_stats`."""
        return _int_hash(await self.client.hgetall(self.keys.shadow_stats(champion, challenger)))

    async def latest_trends(self, window: WindowSize | str, coins: Sequence[str]) -> dict[str, str | None]:
        """The ``trend:latest`` JSON of each coin's ``window`` (None where none), in one MGET."""
        if not coins:
            return {}
        values = await self.client.mget([self.keys.trend_latest(window, coin) for coin in coins])
        return {
            coin: value.decode() if isinstance(value, bytes) else value
            for coin, value in zip(coins, values, strict=True)
        }


def _int_hash(raw: Mapping[Any, Any]) -> dict[str, int]:
    """A Redis hash of counters as ``{field: int}`` (bytes or str replies alike)."""
    return {
        (name.decode() if isinstance(name, bytes) else str(name)): int(value) for name, value in raw.items()
    }


def delete_prefixed_keys(client: redis.Redis, prefix: str, *, chunk: int = 1000) -> int:
    """Delete every key under ``prefix`` (throw-away prefixes of tests and benchmarks).

    The Redis twin of ``core.kafka.delete_prefixed_topics``; returns the count deleted.
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
