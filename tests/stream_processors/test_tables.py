"""BatchedClaims: claims seen at once, durable a flush at a time, rebuilt after a recovery."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from stream_processors.tables import BatchedClaims, use_event

WINDOW_S = 900.0


class FakeWindowedTable:
    """A tumbling WindowWrapper's surface that BatchedClaims uses: item writes relative to
    the current event (recorded with that event's partition, as the changelog would get
    them), the underlying table's data, and the recovery callback."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, str, dict[str, str]]] = []
        self.table = SimpleNamespace(data={})
        self.recover_callbacks: list[Any] = []

    def on_recover(self, fun: Any) -> Any:
        self.recover_callbacks.append(fun)
        return fun

    def __setitem__(self, key: str, value: dict[str, str]) -> None:
        from faust.streams import current_event

        event = current_event()
        assert event is not None
        start = event.message.timestamp - event.message.timestamp % WINDOW_S
        self.writes.append((event.message.partition, key, dict(value)))
        self.table.data[(key, (start, start + WINDOW_S - 0.1))] = dict(value)


class FakeEvent:
    """An event's message coordinates (weakly referenceable, as faust's current event is)."""

    def __init__(self, partition: int, offset: int, timestamp: float, topic: str) -> None:
        self.message = SimpleNamespace(topic=topic, partition=partition, offset=offset, timestamp=timestamp)


def event(partition: int, offset: int, timestamp: float, topic: str = "raw.reddit") -> Any:
    return FakeEvent(partition, offset, timestamp, topic)


def claim(claims: BatchedClaims, ev: Any, key: str, origin: str) -> None:
    use_event(ev)
    claims.claim(key, origin)


def claimed_by(claims: BatchedClaims, ev: Any, key: str) -> str | None:
    use_event(ev)
    return claims.claimed_by(key)


def test_claims_are_seen_at_once_and_written_one_record_per_partition_and_window() -> None:
    table = FakeWindowedTable()
    claims = BatchedClaims(table, WINDOW_S)
    t0 = 1_800_000_000.0 - 1_800_000_000.0 % WINDOW_S
    events = [event(p, o, t0 + o) for o in range(4) for p in (0, 1)]
    for ev in events:
        claim(claims, ev, f"id:{ev.message.partition}-{ev.message.offset}", f"p{ev.message.partition}")
    late = event(0, 9, t0 + WINDOW_S + 1)  # the next window
    claim(claims, late, "id:late", "p0")
    assert claimed_by(claims, late, "id:0-3") == "p0"  # before any flush
    assert table.writes == [] and claims.pending == 9

    assert claims.flush() == 3  # (window 0, partition 0), (window 0, partition 1), (window 1, partition 0)
    assert claims.pending == 0
    by_key = {key.rsplit(":", 1)[0]: (partition, value) for partition, key, value in table.writes}
    assert by_key["raw.reddit:0:3"] == (0, {f"id:0-{o}": "p0" for o in range(4)})
    assert by_key["raw.reddit:1:3"] == (1, {f"id:1-{o}": "p1" for o in range(4)})
    assert by_key["raw.reddit:0:9"] == (0, {"id:late": "p0"})
    # the same last event flushed again by another process (a restart) gets its own key
    again = BatchedClaims(table, WINDOW_S)
    claim(again, events[-1], "id:1-3", "p1")
    again.flush()
    assert len({key for _, key, _ in table.writes}) == 4
    assert claims.flush() == 0


def test_a_claim_lasts_its_window_and_the_next_then_expires() -> None:
    claims = BatchedClaims(FakeWindowedTable(), WINDOW_S)
    t0 = 1_800_000_000.0 - 1_800_000_000.0 % WINDOW_S
    first = event(0, 0, t0 + 10)
    claim(claims, first, "hash:abc", "raw.reddit/0/0")
    assert claimed_by(claims, event(0, 1, t0 + WINDOW_S + 5), "hash:abc") == "raw.reddit/0/0"
    later = event(0, 2, t0 + 2 * WINDOW_S + 5)
    assert claimed_by(claims, later, "hash:abc") is None  # two windows on: out of the horizon
    claim(claims, later, "hash:def", "raw.reddit/0/2")  # a newer window drops the oldest from memory
    assert claimed_by(claims, first, "hash:abc") is None


@pytest.mark.parametrize("old_format", [False, True])
def test_a_recovery_rebuilds_the_claims_from_the_table(old_format: bool) -> None:
    """What the changelog restored (batched records, or one claim per key as written before
    claims were batched) answers lookups after the recovery callback ran."""
    import asyncio

    table = FakeWindowedTable()
    t0 = 1_800_000_000.0 - 1_800_000_000.0 % WINDOW_S
    window = (t0, t0 + WINDOW_S - 0.1)
    if old_format:
        table.table.data = {("id:t3_a", window): "raw.reddit/0/5", ("id:t3_b", window): "raw.reddit/1/7"}
    else:
        table.table.data = {
            ("raw.reddit:1:7", window): {"id:t3_a": "raw.reddit/0/5", "id:t3_b": "raw.reddit/1/7"}
        }
    claims = BatchedClaims(table, WINDOW_S)
    probe = event(0, 99, t0 + 60)
    assert claimed_by(claims, probe, "id:t3_a") is None
    for callback in table.recover_callbacks:
        asyncio.run(callback())
    assert claimed_by(claims, probe, "id:t3_a") == "raw.reddit/0/5"
    assert claimed_by(claims, probe, "id:t3_b") == "raw.reddit/1/7"
    assert claimed_by(claims, probe, "id:t3_c") is None


def test_without_a_current_event_a_lookup_says_why() -> None:
    import contextvars

    claims = BatchedClaims(FakeWindowedTable(), WINDOW_S)
    ctx = contextvars.Context()  # a fresh context: no current event
    with pytest.raises(RuntimeError, match="current event"):
        ctx.run(claims.claimed_by, "id:x")
