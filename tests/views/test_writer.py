"""The view writer against the real local Redis: idempotent, capped, replay-safe, batched."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from core.settings import Settings
from schemas.events import (
    Alert,
    AlertSeverity,
    PriceTick,
    ScoredPost,
    SentimentLabel,
    Source,
    TrendWindow,
    WindowSize,
    content_hash,
)
from schemas.redis_keys import (
    ALERT_MEMORY_S,
    ALERTS_LATEST_MAX,
    POSTS_LATEST_MAX,
    RETENTION_SECONDS,
    REVIEW_POST_TTL_S,
    SHADOW_STATS_TTL_S,
    RedisKeys,
)
from stream_processors.live import CounterUpdate as Counter
from tests.api.seed import make_window, seed_views
from views import AsyncRedisViewWriter, FlushResult, RedisViewWriter, delete_prefixed_keys
from views.writer import REVIEW_CHALLENGER_WEIGHT, REVIEW_REASONS

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def rk(platform: Settings) -> Iterator[tuple[redis.Redis, str]]:
    """A client and a throw-away key prefix, deleted afterwards."""
    prefix = f"test-views-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(platform.redis.dsn)
    yield client, prefix
    delete_prefixed_keys(client, prefix)
    client.close()


def dump(client: redis.Redis, prefix: str) -> dict[str, object]:
    """Every key under the prefix (named without it) with its full value and whether it
    expires, for byte-exact comparisons across prefixes and replays."""
    out: dict[str, object] = {}
    for key in sorted(client.scan_iter(f"{prefix}:*")):
        kind = client.type(key)
        if kind == b"string":
            value: object = client.get(key)
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            value = sorted(client.smembers(key))
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        else:
            value = client.hgetall(key)
        out[key.decode()[len(prefix) :]] = (value, client.ttl(key) > 0)
    return out


def alert(i: int = 0) -> Alert:
    return Alert(
        source_id=f"a{i}",
        event_time=T0,
        ingest_time=T0,
        kind="volume_spike",
        severity=AlertSeverity.INFO,
        message="m",
    )


class RecordingClient:
    """Just enough of ``redis.Redis`` to see how a flush is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bool, list[str]]] = []

    def register_script(self, text: str) -> Any:
        return lambda keys, args, client: client.append("EVALSHA")

    def pipeline(self, transaction: bool) -> Any:
        client = self

        class Pipeline(list[str]):
            def __getattr__(self, name: str) -> Any:
                return lambda *args, **kwargs: self.append(name.upper())

            def execute(self) -> list[int]:
                client.sent.append((transaction, list(self)))
                return [1] * len(self)

        return Pipeline()


@pytest.mark.unit
def test_a_flush_is_one_multi_only_when_an_update_spans_several_commands() -> None:
    client = RecordingClient()
    views = RedisViewWriter(client, "cp")  # type: ignore[arg-type]
    views.add_trend_windows([make_window("bitcoin", WindowSize.ONE_MINUTE, T0)], publish=False)
    views.add_history_point("1m", "bitcoin", "all", 0, "m")
    assert views.flush() == FlushResult(commands=2, latest_updated=1)
    views.add_trend_windows([make_window("bitcoin", WindowSize.ONE_MINUTE, T0)])
    views.add_alert(alert())
    views.flush()
    assert client.sent == [
        (False, ["EVALSHA", "EVALSHA"]),
        (True, ["EVALSHA", "LREM", "LPUSH", "LTRIM"]),  # the trend script publishes the window itself
    ]


@pytest.mark.integration
def test_delete_prefixed_keys_deletes_only_that_prefix(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    other = f"{prefix}x"  # shares the text but not the ``prefix:`` namespace
    for i in range(7):
        client.set(f"{prefix}:k{i}", i)
    client.set(f"{other}:keep", 1)
    try:
        assert delete_prefixed_keys(client, prefix, chunk=3) == 7  # more keys than one chunk
        assert list(client.scan_iter(f"{prefix}:*")) == []
        assert client.get(f"{other}:keep") == b"1"
    finally:
        client.delete(f"{other}:keep")


@pytest.mark.integration
def test_replaying_everything_leaves_redis_identical(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    seeded = seed_views(client, prefix, now=T0)
    before = dump(client, prefix)
    seed_views(client, prefix, now=T0)  # the same batch again
    views = RedisViewWriter(client, prefix)
    views.add_trend_windows(list(reversed(seeded["windows"])))  # and out of order
    views.flush()
    assert dump(client, prefix) == before


@pytest.mark.integration
def test_latest_only_moves_forward_and_ts_replaces_same_start(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    k, views = RedisKeys(prefix), RedisViewWriter(client, prefix)
    w1 = make_window("bitcoin", WindowSize.ONE_MINUTE, T0, 1)
    w2 = make_window("bitcoin", WindowSize.ONE_MINUTE, T0 + timedelta(minutes=1), 2)
    assert views.add_trend_windows([w2]) == 1
    assert views.flush() == FlushResult(commands=1, latest_updated=1)  # one script call, which also publishes
    views.add_trend_windows([w1])
    assert views.flush().latest_updated == 0  # older: kept in ts, not latest
    assert TrendWindow.model_validate_json(client.get(k.trend_latest("1m", "bitcoin"))) == w2  # type: ignore[arg-type]
    assert client.zcard(k.trend_ts("1m", "bitcoin")) == 2
    revised = w2.model_copy(update={"volume": 999})  # a late update of the same window
    views.add_trend_windows([revised], publish=False)
    assert views.flush() == FlushResult(commands=1, latest_updated=1)
    members: list[bytes] = client.zrangebyscore(  # type: ignore[assignment]
        k.trend_ts("1m", "bitcoin"), w2.window_start.timestamp(), "+inf"
    )
    assert [TrendWindow.model_validate_json(m).volume for m in members] == [999]
    assert client.zscore(k.trending("1m"), "bitcoin") == pytest.approx(w2.volume_zscore)
    assert client.smembers(k.coins()) == {b"bitcoin"}


@pytest.mark.integration
def test_a_batch_of_windows_writes_what_one_window_at_a_time_does(rk: tuple[redis.Redis, str]) -> None:
    """One script call per batch (several calls for a long one) must leave the views, the
    published messages and the tally exactly as one call per window did: late windows,
    revisions of the same window and windows past retention included, in shuffled order."""
    import random

    from views.writer import TREND_WINDOWS_PER_CALL

    client, prefix = rk
    day = RETENTION_SECONDS[WindowSize.ONE_MINUTE]
    windows = [
        make_window(coin, size, T0 + timedelta(seconds=step * 60), step)
        for coin in ("bitcoin", "ethereum", "solana")
        for size in (WindowSize.ONE_MINUTE, WindowSize.FIVE_MINUTES)
        for step in range(0, 400, 1 if size is WindowSize.ONE_MINUTE else 5)
    ]
    windows += [make_window("bitcoin", WindowSize.ONE_MINUTE, T0 + timedelta(seconds=day + 3600), 7)]
    windows += [w.model_copy(update={"volume": w.volume + 1}) for w in windows[::17]]  # revisions
    random.Random(3).shuffle(windows)
    assert len(windows) > 2 * TREND_WINDOWS_PER_CALL

    def write(into: str, batches: list[list[TrendWindow]]) -> tuple[int, list[bytes]]:
        views = RedisViewWriter(client, into)
        pubsub = client.pubsub()
        pubsub.subscribe(RedisKeys(into).live_trends())
        assert pubsub.get_message(timeout=5.0)["type"] == "subscribe"
        updated = 0
        for batch in batches:
            views.add_trend_windows(batch)
            updated += views.flush().latest_updated
        published = []
        while (message := pubsub.get_message(timeout=1.0)) is not None:
            published.append(message["data"])
        pubsub.close()
        return updated, published

    one_by_one = write(f"{prefix}:single", [[w] for w in windows])
    batched = write(f"{prefix}:batch", [windows])
    assert batched == one_by_one and len(one_by_one[1]) == len(windows)
    assert dump(client, f"{prefix}:batch") == dump(client, f"{prefix}:single")
    # and both are what the rules say, worked out here without Redis: per series, the last
    # written window of the newest start is latest; per start the last written revision is in
    # the time series, which keeps the retention below its newest start
    keys = RedisKeys(f"{prefix}:batch")
    series: dict[tuple[str, str], list[TrendWindow]] = {}
    for w in windows:
        series.setdefault((w.window.value, w.coin), []).append(w)
    for (size, coin), written in series.items():
        newest = max(w.window_start for w in written)
        latest = [w for w in written if w.window_start == newest][-1]
        assert client.get(keys.trend_latest(size, coin)) == latest.model_dump_json().encode()
        by_start = {w.window_start: w for w in written}
        kept = [
            (by_start[start].model_dump_json().encode(), start.timestamp())
            for start in sorted(by_start)
            if start.timestamp() >= newest.timestamp() - RETENTION_SECONDS[WindowSize(size)]
        ]
        assert client.zrange(keys.trend_ts(size, coin), 0, -1, withscores=True) == kept
    assert client.zcard(keys.trend_ts("1m", "bitcoin")) < 400  # the late window's day trimmed the oldest


@pytest.mark.integration
def test_per_source_windows_are_ignored(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    views = RedisViewWriter(client, prefix)
    w = make_window("bitcoin", WindowSize.ONE_MINUTE, T0).model_copy(update={"source": "reddit"})
    assert views.add_trend_windows([w]) == 0
    assert views.pending == 0 and views.flush() == FlushResult()
    assert not client.exists(RedisKeys(prefix).coins())


@pytest.mark.integration
def test_retention_trims_from_newest(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    k, views = RedisKeys(prefix), RedisViewWriter(client, prefix)
    day = RETENTION_SECONDS[WindowSize.ONE_MINUTE]
    old = make_window("solana", WindowSize.ONE_MINUTE, T0)
    edge = make_window("solana", WindowSize.ONE_MINUTE, T0 + timedelta(seconds=60))
    new = make_window("solana", WindowSize.ONE_MINUTE, T0 + timedelta(seconds=60 + day))
    views.add_trend_windows([old, edge, new])
    views.flush()
    rows: list[Any] = client.zrange(k.trend_ts("1m", "solana"), 0, -1, withscores=True)
    assert [s for _, s in rows] == [edge.window_start.timestamp(), new.window_start.timestamp()]
    views.remove_trend_windows("1m", "solana", [edge.window_start.timestamp()])
    views.flush()
    assert client.zcard(k.trend_ts("1m", "solana")) == 1


@pytest.mark.integration
def test_lists_are_deduplicated_and_capped(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    k, views = RedisKeys(prefix), RedisViewWriter(client, prefix)
    post = seed_views(client, prefix, now=T0)["posts"][0]
    views.add_scored_posts(
        [post.model_copy(update={"source_id": f"t3_x{i}"}) for i in range(POSTS_LATEST_MAX + 10)],
        publish=False,
    )
    views.add_scored_posts([post], publish=False)
    for i in range(ALERTS_LATEST_MAX + 5):
        views.add_alert(alert(i))
    views.add_alert(alert(3))  # a replay moves to the front, never doubles
    views.flush()
    assert client.lindex(k.alerts_latest(), 0) == alert(3).model_dump_json().encode()
    posts = client.lrange(k.posts_latest(), 0, -1)
    assert len(posts) == POSTS_LATEST_MAX and posts[0] == post.model_dump_json().encode()
    assert posts.count(post.model_dump_json().encode()) == 1
    alerts = client.lrange(k.alerts_latest(), 0, -1)
    assert len(alerts) == ALERTS_LATEST_MAX and alerts.count(alert(3).model_dump_json().encode()) == 1


@pytest.mark.integration
def test_a_batch_of_posts_lands_as_pushing_them_one_by_one_would(rk: tuple[redis.Redis, str]) -> None:
    """The batch is one script call: newest first, a replay inside the batch or from an
    earlier one moves to the front, each post is published once per delivery, in order."""
    client, prefix = rk
    k, views = RedisKeys(prefix), RedisViewWriter(client, prefix)
    a, b, c = (scored(f"t3_batch{i}") for i in range(3))
    views.add_scored_posts([a, b], publish=False)
    views.flush()
    pubsub = client.pubsub()
    pubsub.subscribe(k.live_scored())
    pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    try:
        views.add_scored_posts([c, a, c])
        views.add_scored_posts([])  # nothing queued, nothing sent
        views.flush()
        published = [pubsub.get_message(timeout=2.0) for _ in range(3)]
        assert pubsub.get_message(timeout=0.2) is None
    finally:
        pubsub.close()
    assert [m["data"] for m in published if m] == [p.model_dump_json().encode() for p in (c, a, c)]
    assert client.lrange(k.posts_latest(), 0, -1) == [p.model_dump_json().encode() for p in (c, a, b)]


@pytest.mark.integration
def test_price_keeps_newest(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    views = RedisViewWriter(client, prefix)
    newer = PriceTick(source_id="b:2", event_time=T0 + timedelta(minutes=1), coin="bitcoin", price=2.0)
    older = PriceTick(source_id="b:1", event_time=T0, coin="bitcoin", price=1.0)
    views.add_price(newer)
    views.add_price(older)
    assert views.flush().prices_written == 1
    stored = PriceTick.model_validate_json(client.get(RedisKeys(prefix).price_latest("bitcoin")))  # type: ignore[arg-type]
    assert stored.price == 2.0


@pytest.mark.integration
def test_alert_is_raised_once_and_remembered(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    k, views = RedisKeys(prefix), RedisViewWriter(client, prefix)
    views.add_price(PriceTick(source_id="b:1", event_time=T0, coin="bitcoin", price=1.0))
    assert not views.alert_raised(alert())
    assert views.raise_alert_once(alert())
    assert not views.raise_alert_once(alert())
    assert views.alert_raised(alert())
    assert client.lrange(k.alerts_latest(), 0, -1) == [alert().model_dump_json().encode()]
    assert 0 < client.ttl(k.alert_seen("a0")) <= ALERT_MEMORY_S
    assert views.pending == 1  # sent apart from the batch, which stays pending
    assert not client.exists(k.price_latest("bitcoin"))


@pytest.mark.integration
def test_failed_flush_drops_its_batch(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    k, views = RedisKeys(prefix), RedisViewWriter(client, prefix)
    client.set(k.posts_latest(), "not a list")
    post = seed_views(client, f"{prefix}:seed", now=T0)["posts"][0]
    views.add_scored_posts([post], publish=False)
    with pytest.raises(redis.ResponseError):
        views.flush()
    assert views.pending == 0 and views.flush() == FlushResult()
    assert client.get(k.posts_latest()) == b"not a list"


@pytest.mark.integration
def test_spark_state_is_replaced_and_trimmed(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    k, views = RedisKeys(prefix), RedisViewWriter(client, prefix)
    start_ms, retention = 1_764_331_200_000, RETENTION_SECONDS[WindowSize.ONE_MINUTE]
    for _ in range(2):  # a replayed batch changes nothing
        views.add_window_components("1m", start_ms, {"all|bitcoin": '{"n":1}', "all|ethereum": '{"n":2}'})
        views.flush()
    agg = k.spark_components("1m", start_ms)
    assert client.hgetall(agg) == {b"all|bitcoin": b'{"n":1}', b"all|ethereum": b'{"n":2}'}
    assert retention - 5 < client.ttl(agg) <= retention
    views.replace_window_components([("1m", start_ms, {"all|solana": '{"n":3}'})])
    views.flush()
    assert client.hgetall(agg) == {b"all|solana": b'{"n":3}'}

    hist, t = k.spark_history("1m", "bitcoin", "all"), start_ms // 1000
    for start, member in ((t, "a"), (t + 60, "b"), (t + 60, "b2"), (t + 60 + retention, "c")):
        views.add_history_point("1m", "bitcoin", "all", start, member)
    views.flush()
    assert client.zrange(hist, 0, -1, withscores=True) == [(b"b2", t + 60), (b"c", t + 60 + retention)]
    views.replace_history(t, t + 120, [("1m", "bitcoin", "all", {"d": t + 120})])
    views.flush()
    assert client.zrange(hist, 0, -1, withscores=True) == [(b"d", t + 120), (b"c", t + 60 + retention)]


@pytest.mark.integration
def test_async_writer_writes_what_the_sync_one_does(rk: tuple[redis.Redis, str], platform: Settings) -> None:
    client, prefix = rk
    seeded = seed_views(client, f"{prefix}:sync", now=T0)

    async def run() -> tuple[FlushResult, bool, bool]:
        a = aioredis.Redis.from_url(platform.redis.dsn)
        try:
            views = AsyncRedisViewWriter(a, f"{prefix}:async")
            views.add_trend_windows(seeded["windows"], publish=False)
            for coin in ("bitcoin", "ethereum", "solana"):
                tick = PriceTick.model_validate_json(
                    client.get(RedisKeys(f"{prefix}:sync").price_latest(coin))  # type: ignore[arg-type]
                )
                views.add_price(tick)
            views.add_scored_posts(seeded["posts"], publish=False)
            for report in seeded["quality"]:
                views.add_quality_report(report)
            result = await views.flush()
            return result, await views.raise_alert_once(seeded["alert"]), await views.alert_raised(alert())
        finally:
            await a.aclose()

    result, raised, unknown_seen = asyncio.run(run())
    assert (result.latest_updated, result.prices_written, raised, unknown_seen) == (360, 3, True, False)
    expected = dump(client, f"{prefix}:sync")
    actual = dump(client, f"{prefix}:async")
    assert actual.pop(f":alert:seen:{seeded['alert'].source_id}") == (b"1", True)
    assert actual == expected


@pytest.mark.integration
def test_live_counters_and_channels(rk: tuple[redis.Redis, str], platform: Settings) -> None:
    client, prefix = rk
    k = RedisKeys(prefix)
    post = seed_views(client, f"{prefix}:seed", now=T0)["posts"][0]
    counter = Counter("bitcoin", "1m", 1_764_331_200.0, 1_764_331_260.0, 3, 1.5)
    pubsub = client.pubsub()
    pubsub.subscribe(k.live_scored(), k.live_counters())
    for _ in range(2):
        pubsub.get_message(timeout=1.0)  # the two subscribe confirmations

    async def run() -> None:
        a = aioredis.Redis.from_url(platform.redis.dsn)
        try:
            views = AsyncRedisViewWriter(a, prefix)
            views.add_scored_posts([post])
            views.add_live_counter(counter, updated=1_764_331_230.5)
            await views.flush()
        finally:
            await a.aclose()

    try:
        asyncio.run(run())
        messages = [pubsub.get_message(timeout=2.0) for _ in range(2)]
    finally:
        pubsub.close()
    assert [(m["channel"], m["data"]) for m in messages if m] == [
        (k.live_scored().encode(), post.model_dump_json().encode()),
        (k.live_counters().encode(), json.dumps(counter.as_dict()).encode()),
    ]
    key = k.live_counter("1m", "bitcoin")
    assert client.hgetall(key) == {
        b"window_start": b"1764331200.0",
        b"window_end": b"1764331260.0",
        b"volume": b"3",
        b"score_sum": b"1.5",
        b"mean_score": b"0.5",
        b"updated": b"1764331230.5",
    }
    assert 115 < client.ttl(key) <= 121
    assert client.zrange(k.live_volume("1m"), 0, -1, withscores=True) == [(b"bitcoin", 3.0)]
    assert client.lrange(k.posts_latest(), 0, -1) == [post.model_dump_json().encode()]


# -- learning loop: review queue and shadow counters ------------------------------------------


def scored(sid: str, confidence: float = 0.5) -> ScoredPost:
    text = f"bitcoin post {sid}"
    return ScoredPost(
        source_id=sid,
        event_time=T0,
        ingest_time=T0,
        scored_time=T0,
        source=Source.REDDIT,
        text=text,
        original_length=len(text),
        coins=["bitcoin"],
        content_hash=content_hash(text),
        label=SentimentLabel.POSITIVE,
        score=0.2,
        confidence=confidence,
        p_negative=0.2,
        p_neutral=0.2,
        p_positive=0.6,
        model_version="m/1",
    )


def queue(client: redis.Redis, prefix: str) -> list[tuple[str, float]]:
    rows: list[Any] = client.zrevrange(RedisKeys(prefix).review_queue(), 0, -1, withscores=True)
    return [(member.decode(), float(score)) for member, score in rows]


def candidate(client: redis.Redis, prefix: str, sid: str) -> dict[str, Any] | None:
    raw = client.get(RedisKeys(prefix).review_post(sid))
    return None if raw is None else dict(json.loads(raw))


@pytest.mark.integration
def test_review_queue_orders_by_priority_and_stores_the_candidate(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    views = RedisViewWriter(client, prefix)
    views.add_review_candidate(scored("a"), 0.3, ["low_confidence"])
    views.add_review_candidate(scored("b"), 0.8, ["members_disagree", "low_confidence"])
    views.add_review_candidate(scored("c"), 0.5, ["coin_shift"])
    assert views.flush().review_queued == 3
    assert queue(client, prefix) == [("b", 0.8), ("c", 0.5), ("a", 0.3)]
    doc = candidate(client, prefix, "b")
    assert doc is not None
    extra = {"priority": 0.8, "reasons": ["low_confidence", "members_disagree"], "challenger_label": None}
    assert doc == {**json.loads(scored("b").model_dump_json()), **extra}  # reasons in REVIEW_REASONS order
    assert ScoredPost.model_validate({k: v for k, v in doc.items() if k not in extra}) == scored("b")
    ttl = client.ttl(RedisKeys(prefix).review_post("b"))
    assert REVIEW_POST_TTL_S - 5 < ttl <= REVIEW_POST_TTL_S
    with pytest.raises(ValueError, match="unknown review reasons"):
        views.add_review_candidate(scored("d"), 0.1, ["because"])
    assert views.pending == 0


@pytest.mark.integration
def test_review_offers_merge_in_either_order(rk: tuple[redis.Redis, str]) -> None:
    """The champion's offer and the shadow agent's may land in either order: the candidate
    keeps the higher own priority, every reason, and the challenger's part once."""
    client, prefix = rk
    views = RedisViewWriter(client, prefix)
    views.add_review_candidate(scored("x"), 0.4, ["low_confidence", "members_disagree"])
    views.add_review_candidate(scored("x"), 0.2, [], challenger_label="negative")
    views.add_review_candidate(scored("x"), 0.4, ["low_confidence", "members_disagree"])  # a replay
    views.flush()
    views.add_review_candidate(scored("y"), 0.2, ["coin_shift"], challenger_label="neutral")
    views.add_review_candidate(scored("y"), 0.5, ["low_confidence"])
    views.flush()
    x, y = candidate(client, prefix, "x"), candidate(client, prefix, "y")
    assert x is not None and y is not None
    assert (x["priority"], x["challenger_label"]) == (0.4 + REVIEW_CHALLENGER_WEIGHT, "negative")
    assert x["reasons"] == ["low_confidence", "members_disagree", "challenger_disagrees"]
    assert (y["priority"], y["challenger_label"]) == (0.5 + REVIEW_CHALLENGER_WEIGHT, "neutral")
    assert y["reasons"] == ["low_confidence", "challenger_disagrees", "coin_shift"]
    assert queue(client, prefix) == [("y", 1.5), ("x", 1.4)]
    assert set(REVIEW_REASONS) >= set(x["reasons"]) | set(y["reasons"])


@pytest.mark.integration
def test_review_queue_is_capped_and_skips_posts_with_feedback(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    keys = RedisKeys(prefix)
    client.sadd(keys.review_done(), "done")
    views = RedisViewWriter(client, prefix)
    for i, priority in enumerate((0.1, 0.4, 0.3)):
        views.add_review_candidate(scored(f"p{i}"), priority, ["low_confidence"], cap=3)
    views.add_review_candidate(scored("done"), 0.9, ["low_confidence"], cap=3)
    assert views.flush().review_queued == 3
    assert candidate(client, prefix, "done") is None
    # full: a post below the lowest is not kept; one above it pushes the lowest (and its post) out
    views.add_review_candidate(scored("low"), 0.05, ["low_confidence"], cap=3)
    views.add_review_candidate(scored("high"), 0.6, ["low_confidence"], cap=3)
    assert views.flush().review_queued == 1
    assert queue(client, prefix) == [("high", 0.6), ("p1", 0.4), ("p2", 0.3)]
    assert candidate(client, prefix, "p0") is None and candidate(client, prefix, "low") is None
    # a member already queued is re-ranked even when the queue is full
    views.add_review_candidate(scored("p2"), 0.2, [], challenger_label="negative", cap=3)
    views.flush()
    assert queue(client, prefix)[0] == ("p2", 1.3)
    assert client.zcard(keys.review_queue()) == 3


@pytest.mark.integration
def test_review_replay_leaves_redis_identical(rk: tuple[redis.Redis, str]) -> None:
    client, prefix = rk
    views = RedisViewWriter(client, prefix)

    def offer() -> None:
        views.add_review_candidate(scored("a"), 0.3, ["low_confidence"])
        views.add_review_candidate(scored("b"), 0.1, ["coin_shift"], challenger_label="neutral")
        views.flush()

    offer()
    first = dump(client, prefix)
    offer()
    assert dump(client, prefix) == first


@pytest.mark.integration
def test_shadow_counters_add_up_and_expire(rk: tuple[redis.Redis, str], platform: Settings) -> None:
    client, prefix = rk
    views = RedisViewWriter(client, prefix)
    first = views.count_shadow(
        "m/1", "m/2", {"records": 3, "agree": 2, "challenger_negative": 1, "feedback": 0}
    )
    assert first == {"records": 3, "agree": 2, "challenger_negative": 1}

    async def run() -> tuple[dict[str, int], dict[str, int]]:
        a = aioredis.Redis.from_url(platform.redis.dsn)
        try:
            views = AsyncRedisViewWriter(a, prefix)
            totals = await views.count_shadow(
                "m/1", "m/2", {"records": 1, "feedback": 1, "champion_correct": 1}
            )
            return totals, await views.shadow_stats("m/1", "m/2")
        finally:
            await a.aclose()

    totals, read = asyncio.run(run())
    expected = {"records": 4, "agree": 2, "challenger_negative": 1, "feedback": 1, "champion_correct": 1}
    assert totals == read == views.shadow_stats("m/1", "m/2") == expected
    assert (
        SHADOW_STATS_TTL_S - 5
        < client.ttl(RedisKeys(prefix).shadow_stats("m/1", "m/2"))
        <= SHADOW_STATS_TTL_S
    )
    assert views.shadow_stats("m/1", "other") == {}
