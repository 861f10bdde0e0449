"""Micro-batch scoring and hot swap (fake runtime: batching logic only)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from schemas.events import CleanPost, Source, content_hash
from stream_processors.live import CounterUpdate, counter_key, counters_channel, scored_channel
from stream_processors.scorer import ModelHolder, score_batch
from tests.stream_processors.fakes import FakeRuntime

pytestmark = pytest.mark.unit


def clean(i: int, text: str = "Bitcoin is doing great today") -> CleanPost:
    return CleanPost(
        source_id=f"t3_{i}",
        event_time=datetime(2026, 1, 1, tzinfo=UTC),
        source=Source.REDDIT,
        text=f"{text} {i}",
        original_length=30,
        coins=["bitcoin"],
        content_hash=content_hash(f"{text} {i}"),
    )


def test_score_batch_one_call_and_every_post_accounted() -> None:
    runtime = FakeRuntime()
    posts = [clean(1), clean(2, "refuse-me please"), clean(3)]
    result = score_batch(runtime, posts)
    assert len(runtime.calls) == 1 and len(runtime.calls[0]) == 3
    assert [p.source_id for p in result.scored] == ["t3_1", "t3_3"]
    assert [p.source_id for p, _ in result.failed] == ["t3_2"]
    assert all(p.model_version == "fake/1" for p in result.scored)
    scored = result.scored[0]
    assert scored.label.value == "positive" and scored.coins == ["bitcoin"]
    assert scored.ingest_time == posts[0].ingest_time


def test_score_batch_empty() -> None:
    runtime = FakeRuntime()
    assert score_batch(runtime, []).scored == []
    assert runtime.calls == []


def test_hot_swap_between_batches() -> None:
    runtimes = {"v1": FakeRuntime("m/1"), "v2": FakeRuntime("m/2")}
    alias = {"now": "v1"}

    def loader(uri: str) -> FakeRuntime:
        return runtimes[alias["now"]]

    def resolver(uri: str) -> str:
        return runtimes[alias["now"]].model_version

    async def scenario() -> None:
        holder = ModelHolder("models:/m@champion", loader, resolver)
        swaps: list[tuple[str, str]] = []
        holder.on_swap.append(lambda old, new: swaps.append((old, new)))
        await holder.load()
        batch_runtime = holder.current  # a batch in flight keeps its model
        assert not await holder.maybe_swap()  # alias did not move
        alias["now"] = "v2"
        assert await holder.maybe_swap()
        assert batch_runtime.model_version == "m/1"
        assert holder.current.model_version == "m/2" and holder.swaps == 1
        assert swaps == [("m/1", "m/2")]
        assert score_batch(holder.current, [clean(1)]).scored[0].model_version == "m/2"

    asyncio.run(scenario())


def test_failed_swap_keeps_current_model() -> None:
    state = {"fail": False}

    def loader(uri: str) -> FakeRuntime:
        if state["fail"]:
            raise RuntimeError("broken artifact")
        return FakeRuntime("m/1")

    async def scenario() -> None:
        holder = ModelHolder("u", loader, lambda uri: "m/2")
        await holder.load()
        state["fail"] = True
        assert not await holder.maybe_swap()
        assert holder.current.model_version == "m/1"

    asyncio.run(scenario())


def test_registry_down_keeps_serving() -> None:
    def resolver(uri: str) -> str:
        raise ConnectionError("mlflow down")

    async def scenario() -> None:
        holder = ModelHolder("u", lambda uri: FakeRuntime("m/1"), resolver)
        await holder.load()
        assert not await holder.maybe_swap()
        assert holder.version == "m/1"

    asyncio.run(scenario())


def test_live_names_and_counter_mean() -> None:
    assert counter_key("cp", "1m", "bitcoin") == "cp:live:counter:1m:bitcoin"
    assert scored_channel("cp") == "cp:live:scored"
    assert counters_channel("cp") == "cp:live:counters"
    update = CounterUpdate("bitcoin", "1m", 60.0, 120.0, 4, 1.0)
    assert update.mean_score == 0.25 and update.as_dict()["mean_score"] == 0.25
    assert CounterUpdate("x", "5m", 0, 300, 0, 0.0).mean_score == 0.0


def test_process_runtime_reports_the_real_load_error(tmp_path) -> None:
    from cryptopulse.settings import load_settings
    from stream_processors.scorer import ProcessRuntime

    with pytest.raises(RuntimeError, match="not a CryptoPulse model artifact"):
        ProcessRuntime(str(tmp_path), load_settings(home=tmp_path))
