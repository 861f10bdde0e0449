"""The ``count`` agent: per-coin tumbling-window counters, exact with any number of workers.

The score agent does not count: for every scored post it sends one :class:`CountRecord`
per coin (and one for ``all``) to the worker group's internal counts topic, **keyed by
coin** and stamped with the clean record's timestamp. Kafka's key partitioner puts every
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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
from stream_processors.processing import dead_letter
from stream_processors.tables import COUNTER_WINDOWS, StreamTables, use_event

log = structlog.get_logger(__name__)

COMPONENT_COUNT = "stream.count"


@dataclass(frozen=True)
class CountRecord:
    """One scored post's contribution to one coin's counters (internal to the worker group:
    the record of the counts topic, never read outside the stream worker)."""

    source_id: str
    coin: str
    score: float

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> CountRecord:
        """Parse a counts record; ``ValueError`` when it is not one."""
        data = json.loads(payload)
        if not isinstance(data, dict):
            raise ValueError("a counts record is a JSON object")
        source_id, coin, score = data.get("source_id"), data.get("coin"), data.get("score")
        if not isinstance(source_id, str) or not source_id or not isinstance(coin, str) or not coin:
            raise ValueError("a counts record needs a source_id and a coin")
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise ValueError("a counts record needs a numeric score")
        return cls(source_id, coin, float(score))

    @property
    def claim_key(self) -> str:
        return f"{self.coin}|{self.source_id}"


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
            key = record.claim_key
            if key in seen or self.tables.counted.claimed_by(key):
                m.REDELIVERED.labels(self.name).inc()
                continue
            seen.add(key)
            self.tables.counted.claim(key, "1")
            ts = event.message.timestamp
            for name, size in COUNTER_WINDOWS.items():
                start = ts - ts % size
                n, total, _ = deltas.get((name, record.coin, start), (0, 0.0, event))
                deltas[(name, record.coin, start)] = (n + 1, total + record.score, event)
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
