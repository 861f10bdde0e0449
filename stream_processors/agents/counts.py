"""The ``count`` agent: per-coin tumbling-window counters, exact with any number of workers.

The score agent does not count: for each batch it scores it sends one :class:`CountRecord`
per coin (and one for ``all``) and minute, listing the batch's posts of that coin, to the
worker group's internal counts topic, **keyed by coin** and stamped with a clean record's
timestamp of that minute. Kafka's key partitioner puts every
record of a coin on one partition, so exactly one worker owns a coin's counters at a time,
and the counter tables' changelog partition is always that coin's partition: a rebalance
moves a coin's counters whole to the new owner (recovered from the changelog before it
reads on). With the old design (counters written on the partition of whichever clean
record updated them) two workers each held a partial count of every coin and overwrote
each other's Redis mirror.

A post reaches this agent twice only when the score agent's batch was redelivered between
its broker ack and its ``scored`` claim (a crash or rebalance in that window); the
``counted`` table (``coin|source_id``, windowed, on the same partition) skips the copy,
so counters count unique posts. Each batch's new values are mirrored to Redis
(:class:`~stream_processors.live.LivePublisher`, ``HSET`` of the table value: idempotent).
A record that cannot be read is dead-lettered like any other (it cannot come from our own
score agent, but the topic is a topic).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
import structlog
from faust.types import EventT

from core.settings import StreamSettings
from schemas.events import DeadLetter
from stream_processors import metrics as m
from stream_processors.agents import DeadLetters, origin_of, payload_of, unreadable
from stream_processors.cleaning import REASON_INVALID_SCHEMA
from stream_processors.live import CounterUpdate, LivePublisher
from stream_processors.models import ALL_COINS
from stream_processors.processing import dead_letter
from stream_processors.tables import COUNTER_WINDOWS, StreamTables, use_event

log = structlog.get_logger(__name__)

COMPONENT_COUNT = "stream.count"


@dataclass(frozen=True)
class CountRecord:
    """Scored posts' contributions to one coin's counters: one record per coin and minute of
    a score batch (internal to the worker group: never read outside the stream worker).

    One record per post and coin cost a produce, a consume and faust's per-record work
    about 2.3 times per post; a batch of 64 posts now sends one record per coin it
    mentions. The posts of a record share its timestamp's minute, which is what decides
    their 1m and 5m counter windows, so they count exactly where one record each would.
    """

    coin: str
    posts: tuple[tuple[str, float], ...]  # (source_id, score)

    def to_json(self) -> bytes:
        return json.dumps(
            {"coin": self.coin, "posts": [list(p) for p in self.posts]}, separators=(",", ":")
        ).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> CountRecord:
        """Parse a counts record, also the one-post form written before records were batched
        (``source_id``, ``coin``, ``score``); ``ValueError`` when it is neither."""
        data = json.loads(payload)
        if not isinstance(data, dict):
            raise ValueError("a counts record is a JSON object")
        coin = data.get("coin")
        if not isinstance(coin, str) or not coin:
            raise ValueError("a counts record needs a coin")
        raw = data["posts"] if "posts" in data else [[data.get("source_id"), data.get("score")]]
        if not isinstance(raw, list) or not raw:
            raise ValueError("a counts record needs posts")
        posts = []
        for entry in raw:
            if not isinstance(entry, list) or len(entry) != 2:
                raise ValueError("a counts record's post is [source_id, score]")
            source_id, score = entry
            if not isinstance(source_id, str) or not source_id:
                raise ValueError("a counts record needs a source_id per post")
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise ValueError("a counts record needs a numeric score per post")
            posts.append((source_id, float(score)))
        return cls(coin, tuple(posts))

    def claim_key(self, source_id: str) -> str:
        return f"{self.coin}|{source_id}"


COUNT_BUCKET_S = math.gcd(*COUNTER_WINDOWS.values())
"""Posts whose timestamps share a bucket this long share every counter window (60 s: the
largest span that divides each window size), so one count record may carry them all."""


def count_records(
    posts: Sequence[tuple[str, Sequence[str], float, float]],
) -> list[tuple[CountRecord, float]]:
    """(source_id, coins, score, timestamp) of scored posts -> count records with the
    timestamp each is sent with: one per coin (and ``all``) and :data:`COUNT_BUCKET_S`."""
    groups: dict[tuple[str, float], tuple[float, list[tuple[str, float]]]] = {}
    for source_id, coins, score, ts in posts:
        bucket = ts - ts % COUNT_BUCKET_S
        for coin in dict.fromkeys([*coins, ALL_COINS]):
            groups.setdefault((coin, bucket), (ts, []))[1].append((source_id, score))
    return [(CountRecord(coin, tuple(members)), stamp) for (coin, _), (stamp, members) in groups.items()]


class CountAgent:
    """Counts each coin's unique scored posts per tumbling window, on the coin's partition."""

    name = "count"

    def __init__(
        self,
        settings: StreamSettings,
        source: faust.TopicT,
        tables: StreamTables,
        dead_letters: DeadLetters,
        publisher: LivePublisher,
    ) -> None:
        self.settings = settings
        self._source = source
        self.tables = tables
        self.dead_letters = dead_letters
        self.publisher = publisher
        self.taken = 0  # records taken from the stream: progress for the stall watchdog

    @property
    def source(self) -> faust.TopicT:
        return self._source

    def register(self, app: faust.App) -> None:
        app.agent(self.source, name=self.name)(self.run)

    async def run(self, stream: faust.StreamT) -> None:
        async for events in stream.take_events(  # type: ignore[attr-defined]
            self.settings.batch_size, within=self.settings.batch_within_s
        ):
            await self.count_events(events)

    async def count_events(self, events: Sequence[EventT]) -> list[CounterUpdate]:
        """Add a batch to the counters (one table write per coin and window) and mirror them."""
        m.EVENTS_IN.labels(self.name).inc(len(events))
        self.taken += len(events)
        deltas: dict[tuple[str, str, float], tuple[int, float, EventT]] = {}
        seen: set[str] = set()
        letters: list[DeadLetter] = []
        # No await from the first claim to the last counter write: a rebalance (which flushes
        # the changelogs) never falls between a batch's claims and its counts.
        for event in events:
            try:
                record = CountRecord.from_json(payload_of(event))
            except Exception as exc:  # the record fails alone, whatever it holds
                letters.append(self.rejected(event, exc))
                continue
            use_event(event)  # the windowed tables read and write relative to this event
            ts = event.message.timestamp
            for source_id, score in record.posts:
                key = record.claim_key(source_id)
                if key in seen or self.tables.counted.claimed_by(key):
                    m.REDELIVERED.labels(self.name).inc()
                    continue
                seen.add(key)
                self.tables.counted.claim(key, "1")
                for name, size in COUNTER_WINDOWS.items():
                    start = ts - ts % size
                    n, total, _ = deltas.get((name, record.coin, start), (0, 0.0, event))
                    deltas[(name, record.coin, start)] = (n + 1, total + score, event)
        self.tables.counted.flush()  # one changelog record per window and partition
        updates = self.apply(deltas)
        m.EVENTS_OUT.labels(self.name, "counted").inc(len(seen))
        for letter in letters:
            await self.dead_letters.send(letter, self.name)
        await self.publisher.publish((), updates)
        return updates

    @staticmethod
    def rejected(event: EventT, error: Exception) -> DeadLetter:
        """``invalid_schema`` for a record that is not a counts record, else ``unhandled_error``."""
        if isinstance(error, ValueError):  # JSON and Unicode decoding errors included
            return dead_letter(
                payload_of(event),
                origin_of(event),
                reason=REASON_INVALID_SCHEMA,
                detail=str(error),
                component=COMPONENT_COUNT,
            )
        return unreadable(event, error, component=COMPONENT_COUNT)

    def apply(self, deltas: dict[tuple[str, str, float], tuple[int, float, Any]]) -> list[CounterUpdate]:
        """Write the summed deltas into the windowed tables; the new values, for Redis."""
        updates: list[CounterUpdate] = []
        for (name, coin, start), (n, total, event) in deltas.items():
            use_event(event)
            table = self.tables.counters[name]
            current = table[coin].current() or [0, 0.0]
            value = [int(current[0]) + n, float(current[1]) + total]
            table[coin] = value
            size = COUNTER_WINDOWS[name]
            updates.append(CounterUpdate(coin, name, start, start + size, int(value[0]), round(value[1], 6)))
        return updates
