"""The count agent and the score agent's count records (no broker: topic sends captured)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_processors.agents.counts import COMPONENT_COUNT, CountRecord, count_records
from tests.stream_processors.test_agents import Harness, clean

pytestmark = pytest.mark.unit

COUNTS = "cryptopulse-stream-counts"  # the internal topic's name after the "tc." prefix


class CountHarness(Harness):
    """The agents' harness, with the internal counts topic captured too."""

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        counts = self.parts.topics.counts
        self.keys: list[bytes] = []
        capture = self._capture(counts.get_topic_name())

        async def send(key: bytes | None = None, value: bytes | None = None, **kwargs: Any) -> Any:
            assert key is not None and kwargs.get("timestamp")
            self.keys.append(key)
            return await capture(key=key, value=value)

        counts.send = send  # type: ignore[method-assign]

    def totals(self, window: str) -> dict[str, int]:
        """coin -> volume summed over the window table's windows."""
        found: dict[str, int] = {}
        for (coin, _), value in self.parts.tables.counters[window].table.data.items():
            found[coin] = found.get(coin, 0) + int(value[0])
        return found


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[CountHarness]:
    yield CountHarness(tmp_path)


def record(sid: str, coin: str, score: float = 0.5) -> bytes:
    return CountRecord(coin, ((sid, score),)).to_json()


def test_count_record_round_trip_and_rejects() -> None:
    batched = CountRecord("bitcoin", (("t3_a", 1.0), ("t3_b", -0.5)))
    assert CountRecord.from_json(batched.to_json()) == batched
    # the one-post form written before records were batched (still on the topic after an upgrade)
    old = b'{"source_id": "t3_a", "coin": "bitcoin", "score": 1}'
    assert CountRecord.from_json(old) == CountRecord("bitcoin", (("t3_a", 1.0),))
    for bad in (
        b"[]",
        b'{"coin": "bitcoin", "score": 1}',
        b'{"source_id": "x", "coin": "y", "score": true}',
        b'{"coin": "bitcoin", "posts": []}',
        b'{"coin": "bitcoin", "posts": [["t3_a"]]}',
        b'{"posts": [["t3_a", 1]]}',
    ):
        with pytest.raises(ValueError):
            CountRecord.from_json(bad)


def test_count_records_group_a_batch_by_coin_and_minute() -> None:
    t = 1_800_000_000.0  # a multiple of 60: the start of a minute
    posts = [
        ("t3_a", ["bitcoin"], 0.5, t + 1),
        ("t3_b", ["bitcoin", "ethereum"], -0.5, t + 59.9),
        ("t3_c", ["bitcoin", "bitcoin"], 0.25, t + 60.0),  # the next minute; a coin named twice counts once
    ]
    got = {(r.coin, stamp): r.posts for r, stamp in count_records(posts)}
    assert got == {
        ("bitcoin", t + 1): (("t3_a", 0.5), ("t3_b", -0.5)),
        ("all", t + 1): (("t3_a", 0.5), ("t3_b", -0.5)),
        ("ethereum", t + 59.9): (("t3_b", -0.5),),
        ("bitcoin", t + 60.0): (("t3_c", 0.25),),
        ("all", t + 60.0): (("t3_c", 0.25),),
    }


def test_count_agent_counts_each_post_once_per_coin(harness: CountHarness) -> None:
    async def scenario() -> None:
        async with harness.agent("count").test_context() as agent:
            for payload in (
                record("t3_1", "bitcoin", 0.5),
                record("t3_2", "bitcoin", -0.25),
                record("t3_1", "all", 0.5),
                record("t3_1", "bitcoin", 0.5),  # redelivered: already counted
                CountRecord("bitcoin", (("t3_2", -0.25), ("t3_4", 1.0))).to_json(),  # t3_2 again, t3_4 new
                b'{"source_id": "t3_5", "coin": "bitcoin", "score": 0.5}',  # the older one-post form
                b'{"source_id": "t3_3"}',
            ):
                await agent.put(payload, key=b"k")
            deadline = asyncio.get_running_loop().time() + 10
            while not harness.outputs("deadletter"):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    for window in ("1m", "5m"):
        assert harness.totals(window) == {"bitcoin": 4, "all": 1}
    sums = [
        v[1] for (coin, _), v in harness.parts.tables.counters["1m"].table.data.items() if coin == "bitcoin"
    ]
    assert sum(sums) == pytest.approx(0.5 - 0.25 + 1.0 + 0.5)
    (dead,) = harness.outputs("deadletter")
    assert dead["component"] == COMPONENT_COUNT and dead["reason"] == "invalid_schema"


def test_score_agent_sends_count_records_per_coin_keyed_by_coin(harness: CountHarness) -> None:
    def counted() -> list[tuple[str, str]]:
        return sorted((sid, r["coin"]) for r in harness.outputs(COUNTS) for sid, _ in r["posts"])

    async def scenario() -> None:
        async with harness.agent("score").test_context() as agent:
            for i in range(2):
                await agent.put(clean(f"t3_{i}", f"Bitcoin is doing fine today {i}"), key=f"t3_{i}".encode())
            deadline = asyncio.get_running_loop().time() + 10
            while len(counted()) < 4:
                assert asyncio.get_running_loop().time() < deadline, harness.sent
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert counted() == [("t3_0", "all"), ("t3_0", "bitcoin"), ("t3_1", "all"), ("t3_1", "bitcoin")]
    sent = harness.outputs(COUNTS)
    assert len(sent) <= 4  # one record per coin of a batch, not one per post and coin
    assert [r["coin"].encode() for r in sent] == harness.keys  # keyed by coin: one owner per coin
    scored = {r["source_id"]: r["score"] for r in harness.outputs("scored.posts")}
    assert all(score == scored[sid] for r in sent for sid, score in r["posts"])
    assert harness.totals("1m") == {}  # the score agent no longer counts itself
