"""faust overrides: recovery seeks before streams resume; fetches see a never-empty live view."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.tables.recovery import Recovery
from faust.types import TP

from core.async_kafka import TopicTrackingProducer
from core.settings import load_settings
from scoring.holder import ModelHolder
from stream_processors.app import create_app
from stream_processors.faust_ext import SeekFirstRecovery, StreamConsumer
from tests.stream_processors.fakes import FakeRuntime

pytestmark = pytest.mark.unit

STREAM = TP("t.clean.posts", 0)
CHANGELOG = TP("t.app-scored-changelog", 0)


class RecoveryWorld:
    """The parts of app and consumer that ``on_recovery_completed`` touches, recording calls.

    ``fetched_during_seek`` models the consumer thread: while the seek is awaited, any
    active stream partition has its records fetched into the agents' queues.
    """

    def __init__(self, *, rebalance_during_seek: bool = False) -> None:
        self.calls: list[str] = []
        self.active: set[TP] = set()
        self.queued: list[TP] = []  # records in the agents' queues
        self.discarded = 0  # records thrown away from the queues after they were read
        self.generation = 1
        self.rebalance_during_seek = rebalance_during_seek

        async def send() -> None:
            return None

        async def maybe_start() -> None:
            self.calls.append("fetcher")

        self.consumer = SimpleNamespace(
            assignment=lambda: {STREAM, CHANGELOG},
            perform_seek=self.perform_seek,
            resume_partitions=self.resume_partitions,
            resume_flow=lambda: self.calls.append("resume_flow"),
        )
        self.app = SimpleNamespace(
            consumer=self.consumer,
            on_rebalance_complete=SimpleNamespace(send=send),
            conf=SimpleNamespace(broker_request_timeout=5.0),
            flow_control=SimpleNamespace(resume=self.clear_queues),
            _fetcher=SimpleNamespace(maybe_start=maybe_start),
            assignor=SimpleNamespace(assigned_standbys=lambda: set()),
            on_rebalance_end=lambda: self.calls.append("rebalance_end"),
        )
        self.app.consumer_generation_id = 1

    async def perform_seek(self) -> None:
        self.calls.append("seek")
        await asyncio.sleep(0)
        self.queued.extend(tp for tp in self.active if tp == STREAM)  # fetched while seeking
        if self.rebalance_during_seek:
            self.app.consumer_generation_id = 2

    def resume_partitions(self, tps: set[TP]) -> None:
        self.calls.append("resume_partitions")
        self.active |= tps

    def clear_queues(self) -> None:
        self.calls.append("clear_queues")
        self.discarded += len(self.queued)
        self.queued.clear()

    def recovery(self) -> Any:
        def quiet(*args: Any, **kwargs: Any) -> None:
            return None

        async def wait(coro: Any, timeout: float | None = None) -> Any:
            return await coro

        return SimpleNamespace(
            app=self.app,
            log=SimpleNamespace(info=quiet, warning=quiet, dev=quiet),
            _set_recovery_ended=lambda: None,
            tables={},
            actives_for_table={},
            standbys_for_table={},
            _wait=wait,
            completed=SimpleNamespace(set=lambda: self.calls.append("completed")),
            _is_changelog_tp=lambda tp: tp == CHANGELOG,
        )


def run_completion(method: Any, world: RecoveryWorld) -> None:
    recovery = world.recovery()
    recovery.tables = SimpleNamespace(
        values=lambda: [], on_actives_ready=lambda: None, on_standbys_ready=lambda: None
    )
    asyncio.run(method(recovery, 1))


def test_streams_resume_only_after_the_seek_and_the_queue_clear() -> None:
    world = RecoveryWorld()
    run_completion(SeekFirstRecovery.on_recovery_completed, world)
    calls = world.calls
    assert calls.index("seek") < calls.index("clear_queues") < calls.index("resume_partitions")
    assert world.active == {STREAM}  # changelogs stay paused
    assert world.discarded == 0  # nothing read during the seek was thrown away


def test_fausts_own_order_lets_records_fetched_during_the_seek_be_cleared() -> None:
    """The bug the override fixes (faust issue #596): streams resumed before the seek."""
    world = RecoveryWorld()
    run_completion(Recovery.on_recovery_completed, world)
    assert world.calls.index("resume_partitions") < world.calls.index("seek")
    assert world.discarded == 1  # read during the seek, then cleared: lost to the agent


def test_a_rebalance_during_the_seek_leaves_streams_paused() -> None:
    world = RecoveryWorld(rebalance_during_seek=True)
    run_completion(SeekFirstRecovery.on_recovery_completed, world)
    assert "resume_partitions" not in world.calls and world.active == set()


def test_app_uses_the_seek_first_recovery(tmp_path) -> None:
    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "t-r"})
    app = create_app(settings, holder=ModelHolder("fake", lambda uri: FakeRuntime()))
    assert isinstance(app.tables.recovery, SeekFirstRecovery)  # type: ignore[attr-defined]


def test_fetch_sees_live_partitions_but_never_an_empty_set(tmp_path) -> None:
    """faust passes its live set; emptied before the fetch runs, aiokafka would drain all."""
    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "t-s"})
    app = create_app(settings, holder=ModelHolder("fake", lambda uri: FakeRuntime()))
    live = {STREAM}
    seen: list[Any] = []

    async def getmany(active: Any, timeout: float) -> dict[TP, list[Any]]:
        await asyncio.sleep(0)  # the consumer thread runs the fetch later
        seen.append((bool(active), STREAM in active, CHANGELOG in active))
        return {}

    async def fetch() -> None:
        async def ignore(message: Any) -> None:
            return None

        consumer = app.transport.create_consumer(
            callback=ignore, on_partitions_revoked=lambda r: None, on_partitions_assigned=lambda a: None
        )
        assert isinstance(consumer, StreamConsumer)
        consumer._thread = SimpleNamespace(getmany=getmany)  # type: ignore[assignment]
        task = asyncio.ensure_future(consumer._getmany(live, 1.0))
        await asyncio.sleep(0)
        live.clear()  # faust pauses the partition while the fetch is in flight ...
        live.add(CHANGELOG)  # ... and resumes another
        await task
        live.clear()
        await consumer._getmany(live, 1.0)

    asyncio.run(fetch())
    # membership is live; an emptied set still is not "every partition" to aiokafka
    assert seen == [(True, False, True), (True, False, False)]


def test_before_commit_hooks_run_ahead_of_faust_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clean agent's buffered claims reach the producer before faust flushes it and
    commits the offsets, so a committed record's claims are in the changelog."""
    import asyncio

    from faust.transport.drivers import aiokafka as faust_aiokafka

    from stream_processors.faust_ext import StreamConsumer

    calls: list[str] = []

    async def faust_commit(self: Any, offsets: Any, start_new_transaction: bool = True) -> bool:
        calls.append("faust flush + commit")
        return True

    monkeypatch.setattr(faust_aiokafka.Consumer, "_commit_offsets", faust_commit)
    consumer = StreamConsumer.__new__(StreamConsumer)
    consumer.__dict__["app"] = SimpleNamespace(before_commit=[lambda: calls.append("claims flushed")])
    assert asyncio.run(consumer._commit_offsets({})) is True
    assert calls == ["claims flushed", "faust flush + commit"]


def test_the_worker_produces_with_the_tracking_producer(tmp_path) -> None:
    app = create_app(load_settings(home=tmp_path))
    assert app.producer._producer_type is TopicTrackingProducer  # type: ignore[attr-defined]  # faust's hook
