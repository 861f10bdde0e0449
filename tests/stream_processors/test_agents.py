"""The faust agents themselves, through ``agent.test_context()`` (no broker: topic sends captured)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.settings import load_settings
from schemas.events import CleanPost, RedditPost, Source, content_hash
from scoring.holder import ModelHolder
from stream_processors.app import create_app
from tests.stream_processors.fakes import FakeRuntime

pytestmark = pytest.mark.unit


class Harness:
    """An app whose output topics append to ``sent`` instead of producing to Kafka."""

    def __init__(self, home: Path) -> None:
        settings = load_settings(
            home=home,
            kafka={"topic_prefix": "tc"},
            stream={"live_redis": False, "quality_min_records": 4, "drift_min_records": 3},
        )
        self.runtime = FakeRuntime("fake/7")
        self.app = create_app(settings, holder=ModelHolder("fake", lambda uri: self.runtime))
        self.parts = self.app.parts
        self.sent: list[tuple[str, dict[str, Any]]] = []
        topics = self.parts.topics
        for topic in (topics.clean, topics.scored, topics.dead_letter, topics.alerts, topics.counts):
            topic.send = self._capture(topic.get_topic_name())  # type: ignore[method-assign]

    def _capture(self, name: str) -> Any:
        async def send(key: bytes | None = None, value: bytes | None = None, **kwargs: Any) -> Any:
            assert value is not None
            self.sent.append((name.split(".", 1)[1], json.loads(value)))
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        return send

    def agent(self, name: str) -> Any:
        return next(a for a in self.app.agents.values() if a.name == name)

    def outputs(self, topic: str) -> list[dict[str, Any]]:
        return [record for name, record in self.sent if name == topic]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    yield Harness(tmp_path)


def reddit(sid: str, text: str) -> bytes:
    return RedditPost(source_id=sid, event_time=datetime.now(UTC), subreddit="Bitcoin", title=text).to_json()


def clean(sid: str, text: str) -> bytes:
    return CleanPost(
        source_id=sid,
        event_time=datetime.now(UTC),
        source=Source.REDDIT,
        text=text,
        original_length=len(text),
        coins=["bitcoin"],
        content_hash=content_hash(text),
    ).to_json()


def test_clean_agent_one_outcome_each(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.agent("clean").test_context() as agent:
            await agent.put(reddit("t3_a", "Bitcoin looks strong today my friends"), key=b"t3_a")
            await agent.put(b"{broken", key=b"x")
            await agent.put(reddit("t3_a", "Bitcoin looks strong today, again"), key=b"t3_a")
            await agent.put(
                reddit("t3_b", "Bitcoin va a subir mucho esta semana según los analistas"), key=b"t3_b"
            )

    asyncio.run(scenario())
    assert [r["source_id"] for r in harness.outputs("clean.posts")] == ["t3_a"]
    dead = {r["reason"]: r for r in harness.outputs("deadletter")}
    assert set(dead) == {"malformed_json", "duplicate_source_id", "non_english"}
    assert dead["malformed_json"]["payload"] == "{broken" and dead["malformed_json"]["original_key"] == "x"


@pytest.mark.parametrize("outcome", ["refused", "acked", "cancelled"])
def test_a_record_the_broker_refuses_exits_the_worker_before_a_commit(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    """faust's commit flushes the producer but ignores how each delivery ended, so a clean post
    the broker refused would have its raw record committed: lost. The refusal exits the worker
    instead (the raw record is handled again after the restart); an ack or a cancelled send
    (the producer stopping) does not."""
    from stream_processors import agents

    exits: list[BaseException] = []
    monkeypatch.setattr(agents, "on_refused_delivery", exits.append)
    deliveries: list[asyncio.Future[Any]] = []

    async def send(key: bytes | None = None, value: bytes | None = None, **kwargs: Any) -> Any:
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        deliveries.append(delivery)
        return delivery

    harness.parts.topics.clean.send = send  # type: ignore[method-assign]

    async def scenario() -> None:
        async with harness.agent("clean").test_context() as agent:
            await agent.put(reddit("t3_a", "Bitcoin looks strong today my friends"), key=b"t3_a")
            assert len(deliveries) == 1
            if outcome == "refused":
                deliveries[0].set_exception(RuntimeError("MessageSizeTooLargeError"))
            elif outcome == "acked":
                deliveries[0].set_result(None)
            else:
                deliveries[0].cancel()
            await asyncio.sleep(0)  # the delivery's callbacks run

    asyncio.run(scenario())
    assert [str(e) for e in exits] == (["MessageSizeTooLargeError"] if outcome == "refused" else [])


def test_a_refused_alert_fails_its_check_not_the_worker(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alert is no input's output: the broker refusing it fails the monitor's check (logged,
    tried again next tick) and never exits the worker as a refused clean post does."""
    from schemas.events import Alert, AlertSeverity
    from stream_processors import agents
    from stream_processors.monitors.alerts import AlertSender

    exits: list[BaseException] = []
    monkeypatch.setattr(agents, "on_refused_delivery", exits.append)

    async def refused(key: bytes | None = None, value: bytes | None = None, **kwargs: Any) -> Any:
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        delivery.set_exception(RuntimeError("NotEnoughReplicas"))
        return delivery

    harness.parts.topics.alerts.send = refused  # type: ignore[method-assign]
    alert = Alert(
        source_id="data_quality:reddit:2026-12-05T12:00:00Z",
        event_time=datetime.now(UTC),
        kind="data_quality",
        severity=AlertSeverity.WARNING,
        message="completeness breached",
    )
    sender = AlertSender(harness.parts.topics.alerts, harness.parts.publisher)

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="NotEnoughReplicas"):
            await sender.raise_once(alert)
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert exits == []


def test_score_agent_batches_counts_and_skips_replays(harness: Harness) -> None:
    async def until(predicate: Any, timeout_s: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, harness.sent
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        async with harness.agent("score").test_context() as agent:
            for i in range(3):
                await agent.put(clean(f"t3_{i}", f"Bitcoin is doing fine today {i}"), key=f"t3_{i}".encode())
            await until(lambda: len(harness.outputs("scored.posts")) == 3)
            # after a restart the same clean record is read again: already scored, skipped
            await agent.put(clean("t3_0", "Bitcoin is doing fine today 0"), key=b"t3_0")
            await agent.put(clean("t3_9", "refuse-me Bitcoin"), key=b"t3_9")
            await agent.put(b'{"not": "a clean post"}', key=b"bad")
            await until(lambda: len(harness.outputs("deadletter")) == 2)
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    scored = harness.outputs("scored.posts")
    assert sorted(r["source_id"] for r in scored) == ["t3_0", "t3_1", "t3_2"]
    assert {r["model_version"] for r in scored} == {"fake/7"}
    assert all(len(batch) >= 1 for batch in harness.runtime.calls)
    dead = {r["reason"]: r for r in harness.outputs("deadletter")}
    assert set(dead) == {"scoring_failed", "invalid_schema"}
    assert dead["scoring_failed"]["component"] == "stream.score"
    counted = [
        sid
        for r in harness.outputs("cryptopulse-stream-counts")
        if r["coin"] == "all"
        for sid, _ in r["posts"]
    ]
    assert sorted(counted) == ["t3_0", "t3_1", "t3_2"]  # the replay and the failure are not counted


def test_clean_agent_feeds_the_data_quality_monitor(harness: Harness) -> None:
    async def scenario() -> list[Any]:
        async with harness.agent("clean").test_context() as agent:
            await agent.put(reddit("t3_q1", "Bitcoin looks strong into the weekly close, buyers everywhere"))
            await agent.put(reddit("t3_q2", "Ethereum gas fees are finally low enough to move my coins"))
            await agent.put(
                reddit("t3_q3", "Bitcoin va a subir mucho esta semana según los analistas del mercado")
            )
            await agent.put(
                reddit("t3_q4", "Bitcoin wird diese Woche stark steigen, sagen die Analysten am Markt")
            )
            await agent.put(b"{broken", key=b"x")
        return await harness.parts.quality.check(now=time.time() + 10 * 3600)

    raised = asyncio.run(scenario())
    alerts = harness.outputs("alerts")
    rules = sorted(a["source_id"].split(":")[1] for a in alerts)
    assert rules == ["language", "validity"]  # 2 of 5 non-English, 1 of 5 malformed
    assert [a.source_id for a in raised] == [a["source_id"] for a in alerts]
    language = next(a for a in alerts if ":language:" in a["source_id"])
    assert language["kind"] == "data_quality" and language["value"] == 0.4 and language["threshold"] == 0.05
    # test_context() feeds the agent from an internal channel, so the source is that channel's name
    assert language["source_id"].startswith("data_quality:language:<internal>:")


def test_score_agent_feeds_the_drift_monitor(harness: Harness) -> None:
    import numpy as np

    from scoring.drift import ReferenceDistribution

    # the model's test split: confident neutral predictions; live: hesitant positive ones
    harness.runtime.reference = ReferenceDistribution.from_probabilities(
        np.tile([0.02, 0.96, 0.02], (100, 1))
    )

    async def scenario() -> list[Any]:
        async with harness.agent("score").test_context() as agent:
            for i in range(4):
                await agent.put(
                    clean(f"t3_dr{i}", f"Bitcoin is doing fine today {i}"), key=f"t3_dr{i}".encode()
                )
            deadline = asyncio.get_running_loop().time() + 10
            while len(harness.outputs("scored.posts")) < 4:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
        return await harness.parts.drift.check(now=time.time() + 3 * 3600)

    raised = asyncio.run(scenario())
    alerts = harness.outputs("alerts")
    assert sorted(a["source_id"].split(":")[1] for a in alerts) == ["confidence", "labels"]
    assert all(a["kind"] == "model_drift" and ":fake/7:" in a["source_id"] for a in alerts)
    assert len(raised) == 2


def test_stalled_source_partition_stops_the_worker_once(tmp_path: Path) -> None:
    """The lag timer's backlog feeds the stall watchdog; expected pauses never count."""
    from faust.types import TP

    stops: list[str] = []
    broker = {"up": True}
    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "ts"}, stream={"stall_timeout_s": 30})
    runtime = FakeRuntime("fake/1")
    holder = ModelHolder("fake", lambda uri: runtime)
    app = create_app(
        settings, holder=holder, on_stall=lambda: stops.append("stop"), broker_up=lambda: broker["up"]
    )
    clean_tp = TP("ts.clean.posts", 0)
    backlog = {clean_tp: (1200, None)}

    def check(now: float) -> list[Any]:
        return list(asyncio.run(app.parts.lag.check_stall(backlog, now)))

    assert check(0.0) == []  # model not loaded yet: waiting is expected
    assert check(100.0) == []
    asyncio.run(holder.load())
    assert check(100.0) == []
    app.rebalancing = True  # a rebalance pauses every partition: the clock restarts
    assert check(131.0) == []
    app.rebalancing = False
    assert check(131.0) == []
    broker["up"] = False  # a broker outage is not a stall: the consumer resumes by itself
    assert check(161.0) == [] and not stops
    broker["up"] = True
    assert check(161.0) == []
    assert check(190.0) == []
    assert check(191.0) == [clean_tp]
    assert stops == ["stop"] and app.stalled
    assert check(200.0) == [clean_tp]
    assert stops == ["stop"]  # asked once; the worker is already stopping


def test_backlog_progress_counts_reads_and_records_taken(tmp_path: Path) -> None:
    """A partition whose reads are paused while its agent works through a full buffer is
    slow, not stalled: the progress marker moves with the records the agent takes."""
    from faust.types import TP

    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "tb"})
    app = create_app(settings, holder=ModelHolder("fake", lambda uri: FakeRuntime()))
    lag = app.parts.lag
    clean_tp, raw_tp, changelog_tp = TP("tb.clean.posts", 1), TP("tb.raw.reddit", 0), TP("tb.x-changelog", 0)

    class FakeConsumer:
        def __init__(self) -> None:
            self._read_offset = {clean_tp: 9, raw_tp: 99}

        def assignment(self) -> set[TP]:
            return {clean_tp, raw_tp, changelog_tp}

        def highwater(self, tp: TP) -> int:
            return 1000 if tp == clean_tp else 100

    app.consumer = FakeConsumer()  # type: ignore[assignment]
    before = lag.source_backlog()
    assert before == {clean_tp: (990, (9, 0)), raw_tp: (0, (99, 0))}  # changelogs are not sources
    app.parts.score.taken += 16  # the score agent took a batch; reads did not move
    after = lag.source_backlog()
    assert after[clean_tp][0] == 990 and after[clean_tp][1] != before[clean_tp][1]


def test_model_poll_swaps_between_batches_and_updates_the_model_gauges(tmp_path: Path) -> None:
    """The score agent's ``model_poll`` timer follows the registry alias; the gauges say which
    version serves (the swap logic itself is ``ModelHolder``'s)."""
    from stream_processors import metrics as m

    runtimes = {"fake/1": FakeRuntime("fake/1"), "fake/2": FakeRuntime("fake/2")}
    alias = {"points_to": "fake/1"}
    holder = ModelHolder(
        "models:/fake@champion", lambda uri: runtimes[alias["points_to"]], lambda uri: alias["points_to"]
    )
    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "tm"}, stream={"live_redis": False})
    score = create_app(settings, holder=holder).parts.score
    swaps_before = m.MODEL_SWAPS._value.get()

    async def scenario() -> None:
        await score.poll_model()  # nothing loaded yet: the agent loads the model first
        assert not holder.loaded
        await score.ensure_model()
        alias["points_to"] = "fake/2"
        await score.poll_model()

    asyncio.run(scenario())
    assert holder.version == "fake/2" and m.MODEL_SWAPS._value.get() == swaps_before + 1
    assert m.MODEL_INFO.labels("fake/1")._value.get() == 0 and m.MODEL_INFO.labels("fake/2")._value.get() == 1


NESTED = b"[" * 100_000 + b"]" * 100_000  # 200 KB deeply nested array


def big_post() -> bytes:
    return json.dumps(
        {
            "kind": "post",
            "source_id": "t3_big",
            "event_time": "2026-01-01T00:00:00Z",
            "subreddit": "Bitcoin",
            "title": "Bitcoin",
            "selftext": "x" * 2_000_000,
        }
    ).encode()


def test_clean_agent_dead_letters_poison_records_and_carries_on(harness: Harness) -> None:
    big = big_post()

    async def scenario() -> None:
        async with harness.agent("clean").test_context() as agent:
            await agent.put(NESTED, key=b"nested")
            await agent.put(b'{"kind": "post", "title": "\xff\xfe"}', key=b"utf8")
            await agent.put(b'{"kind": "post", "title": "a\x00b"}', key=b"nul")
            await agent.put(big, key=b"big")
            await agent.put(b"[1, 2, 3]", key=b"array")
            await agent.put(reddit("t3_ok", "Bitcoin looks strong today my friends"), key=b"t3_ok")

    asyncio.run(scenario())
    assert [r["source_id"] for r in harness.outputs("clean.posts")] == ["t3_ok"]
    dead = {r["original_key"]: r for r in harness.outputs("deadletter")}
    assert {key: r["reason"] for key, r in dead.items()} == {
        "nested": "malformed_json",
        "utf8": "malformed_json",
        "nul": "malformed_json",
        "big": "invalid_schema",
        "array": "invalid_schema",
    }
    assert dead["nested"]["payload_size"] == len(NESTED) and len(dead["nested"]["payload"]) == 64 * 1024
    assert dead["big"]["payload_size"] == len(big) and len(dead["big"]["payload"]) == 64 * 1024


def test_clean_agent_dead_letters_a_record_whose_handling_raises(harness: Harness) -> None:
    """Whatever raises while one record is handled dead-letters that record, and the next
    record is cleaned as usual (an exception out of the agent would be acked and lost)."""
    clean_agent = harness.parts.clean
    catalog = clean_agent.tagger

    class ExplodingTagger:
        def tag(self, text: str) -> list[str]:
            if "explode" in text:
                raise RuntimeError("tagger blew up")
            return catalog.tag(text)

    clean_agent.tagger = ExplodingTagger()

    async def scenario() -> None:
        async with harness.agent("clean").test_context() as agent:
            await agent.put(
                reddit("t3_boom", "Bitcoin will explode higher this week, friends"), key=b"t3_boom"
            )
            await agent.put(reddit("t3_fine", "Bitcoin looks strong today my friends"), key=b"t3_fine")

    asyncio.run(scenario())
    assert [r["source_id"] for r in harness.outputs("clean.posts")] == ["t3_fine"]
    [dead] = harness.outputs("deadletter")
    assert dead["reason"] == "unhandled_error" and dead["component"] == "stream.clean"
    assert dead["detail"] == "RuntimeError: tagger blew up" and dead["original_key"] == "t3_boom"


def test_score_agent_dead_letters_unreadable_records(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stream_processors.agents import score as score_module

    class ExplodingCleanPost(CleanPost):
        @classmethod
        def from_json(cls, payload: bytes | str) -> Any:
            if b"explode" in (payload if isinstance(payload, bytes) else payload.encode()):
                raise MemoryError("no room for this one")
            return CleanPost.from_json(payload)

    monkeypatch.setattr(score_module, "CleanPost", ExplodingCleanPost)

    async def scenario() -> None:
        async with harness.agent("score").test_context() as agent:
            await agent.put(NESTED, key=b"nested")
            await agent.put(b"\xff\xfe\x00garbage", key=b"utf8")
            await agent.put(b'"just a string"', key=b"string")
            await agent.put(clean("t3_x", "explode Bitcoin today"), key=b"t3_x")
            await agent.put(clean("t3_ok", "Bitcoin is doing fine today"), key=b"t3_ok")
            deadline = asyncio.get_running_loop().time() + 10
            while len(harness.outputs("scored.posts")) < 1 or len(harness.outputs("deadletter")) < 4:
                assert asyncio.get_running_loop().time() < deadline, harness.sent
                await asyncio.sleep(0.02)

    asyncio.run(scenario())
    assert [r["source_id"] for r in harness.outputs("scored.posts")] == ["t3_ok"]
    dead = {r["original_key"]: r for r in harness.outputs("deadletter")}
    assert {key: r["reason"] for key, r in dead.items()} == {
        "nested": "invalid_schema",
        "utf8": "invalid_schema",
        "string": "invalid_schema",
        "t3_x": "unhandled_error",
    }
    assert dead["t3_x"]["detail"] == "MemoryError: no room for this one"
    assert all(r["component"] == "stream.score" for r in dead.values())


def _score_one_post_until_the_worker_exits(harness: Harness, exits: list[BaseException]) -> None:
    """Put one clean post to the score agent and wait (10 s at most) for its exit call; the
    batch's own error, re-raised as the agent stops, is expected."""

    async def scenario() -> None:
        async with harness.agent("score").test_context() as agent:
            await agent.put(clean("t3_a", "Bitcoin is doing fine today"), key=b"t3_a")
            deadline = asyncio.get_running_loop().time() + 10
            while not exits:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)

    with contextlib.suppress(RuntimeError):
        asyncio.run(scenario())


def test_score_agent_exits_for_the_supervisor_when_the_model_fails_a_batch(harness: Harness) -> None:
    """A runtime failing the whole batch is not the records' fault: nothing is dead-lettered
    or acked, the worker exits so the supervisor restarts it and the batch is scored again."""
    exits: list[BaseException] = []
    harness.parts.score.exit_worker = exits.append

    def broken(texts: Any) -> list[Any]:
        raise RuntimeError("scoring process gone")

    harness.runtime.score = broken  # type: ignore[method-assign]

    _score_one_post_until_the_worker_exits(harness, exits)
    assert [str(e) for e in exits] == ["scoring process gone"]
    assert harness.outputs("scored.posts") == [] and harness.outputs("deadletter") == []
    assert not harness.parts.score._in_flight  # a redelivery of the batch is scored again


def test_score_agent_keeps_a_batch_whose_acks_come_during_the_broker_check(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acks that arrive while the agent asks whether the broker answers finish the batch: no
    restart for a batch that was delivered after all."""
    score = harness.parts.score
    monkeypatch.setattr(score, "settings", score.settings.model_copy(update={"ack_timeout_s": 0.1}))
    exits, _ = _record_exits_and_releases(score, monkeypatch)
    late: list[asyncio.Future[Any]] = []

    probes: list[int] = []

    def broker_up() -> bool:  # runs in a thread, like the real probe
        probes.append(1)
        if len(probes) == 2:  # the check that would fail the batch: the ack lands meanwhile
            future = late[0]
            future.get_loop().call_soon_threadsafe(future.set_result, None)
            time.sleep(0.2)
        return True

    score.broker_up = broker_up

    async def acked_late(*args: Any, **kwargs: Any) -> list[Any]:
        late.append(asyncio.get_running_loop().create_future())
        return [late[0]]

    score.send_counts = acked_late  # type: ignore[method-assign]

    async def scenario() -> None:
        async with harness.agent("score").test_context() as agent:
            await agent.put(clean("t3_a", "Bitcoin is doing fine today"), key=b"t3_a")
            deadline = asyncio.get_running_loop().time() + 10
            while not harness.outputs("scored.posts") or not late or not late[0].done():
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # past the probe

    asyncio.run(scenario())
    assert len(probes) == 2 and exits == []
    assert not score._in_flight


def _record_exits_and_releases(
    score: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[BaseException], list[str]]:
    """The score agent's exit calls, and the order of exits and batch releases."""
    from stream_processors.agents import score as score_module

    exits: list[BaseException] = []
    order: list[str] = []

    def exit_worker(error: BaseException) -> None:
        order.append("exit")
        exits.append(error)

    score.exit_worker = exit_worker
    real_release = score_module.release

    def recorded_release(events: Any) -> None:
        order.append("release")
        real_release(events)

    monkeypatch.setattr(score_module, "release", recorded_release)
    return exits, order


@pytest.mark.parametrize("stage", ["send", "broker_ack"])
def test_score_agent_exits_for_the_supervisor_when_a_batch_fails_past_the_model(
    harness: Harness, stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch the model scored but whose records cannot be handed over (the producer raises,
    or the broker refuses them) fails as a whole too: the worker exits once, at once, before
    the batch's events are released (faust's commit does not check the broker's acks), instead
    of releasing the batch and saying so only when the next batch arrives."""
    score = harness.parts.score
    exits, order = _record_exits_and_releases(score, monkeypatch)

    async def refused(*args: Any, **kwargs: Any) -> list[Any]:
        if stage == "send":
            raise RuntimeError("producer closed")
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(RuntimeError("broker refused the batch"))
        return [failed]

    score.send_counts = refused  # type: ignore[method-assign]

    _score_one_post_until_the_worker_exits(harness, exits)
    expected = "producer closed" if stage == "send" else "broker refused the batch"
    assert [str(e) for e in exits] == [expected]
    assert order[0] == "exit", order  # nothing released, so nothing committable, before the exit
    assert harness.outputs("deadletter") == []
    assert not score._in_flight


def test_score_agent_exits_when_the_broker_answers_but_never_acks_the_batch(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A producer that never delivers (aiokafka once stranded a batch so) held the agent for
    ever with its offsets. A broker that does not answer is waited for; one that answered at
    two ``stream.ack_timeout_s`` checks in a row while the acks stayed away fails the batch:
    the worker exits before releasing it, and the restarted worker sends it again."""
    from stream_processors.agents import score as score_module

    score = harness.parts.score
    monkeypatch.setattr(score, "settings", score.settings.model_copy(update={"ack_timeout_s": 0.2}))
    answers = iter([False, True, True])  # away: wait; back: one more timeout; answers again: fail
    checks: list[bool] = []

    def broker_up() -> bool:
        checks.append(next(answers))
        return checks[-1]

    score.broker_up = broker_up
    exits, order = _record_exits_and_releases(score, monkeypatch)

    async def never_acked(*args: Any, **kwargs: Any) -> list[Any]:
        return [asyncio.get_running_loop().create_future()]

    score.send_counts = never_acked  # type: ignore[method-assign]

    _score_one_post_until_the_worker_exits(harness, exits)
    assert checks == [False, True, True]
    assert len(exits) == 1 and isinstance(exits[0], score_module.DeliveryStalled), exits
    assert "has not acked the batch's 2 records" in str(exits[0])  # the scored post and its count
    assert order[0] == "exit", order
    assert not score._in_flight


def test_lag_series_of_partitions_moved_away_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a rebalance a worker stops reporting the lag of partitions it no longer owns."""
    from faust.types import TP

    from stream_processors import metrics as m

    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "lg"})
    app = create_app(settings, holder=ModelHolder("fake", lambda uri: FakeRuntime("fake/1")))
    lag = app.parts.lag
    first, second = TP("lg.raw.news", 0), TP("lg.raw.news", 1)
    backlogs = iter([{first: (5, None), second: (7, None)}, {second: (2, None)}])
    monkeypatch.setattr(lag, "source_backlog", lambda: next(backlogs))

    def series() -> dict[str, float]:
        return {
            s.labels["partition"]: s.value
            for metric in m.CONSUMER_LAG.collect()
            for s in metric.samples
            if s.labels.get("topic") == "lg.raw.news"
        }

    asyncio.run(lag.update_lag())
    assert series() == {"0": 5.0, "1": 7.0}
    asyncio.run(lag.update_lag())  # partition 0 went to another worker
    assert series() == {"1": 2.0}


def test_clean_agent_lets_other_tasks_run_while_records_are_buffered(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust's stream does not suspend while records are buffered: the agent must yield by
    itself, or the score agent's finished batch (and its idle scoring child) waits for a
    whole fetch to be cleaned."""
    agent = harness.parts.clean
    order: list[str] = []

    async def clean_one(event: Any) -> None:
        time.sleep(0.001)  # ~ the cost of cleaning one record, without suspending
        order.append(f"record {event}")

    class BufferedStream:
        async def events(self) -> Any:
            for i in range(50):
                yield i  # never suspends, like a stream over a full buffer

    async def other_task() -> None:
        order.append("other task")

    async def scenario() -> None:
        monkeypatch.setattr(agent, "warm_up", lambda: None)
        monkeypatch.setattr(agent, "clean_one", clean_one)
        cleaning = asyncio.ensure_future(agent.run(BufferedStream()))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)  # the agent is cleaning (its warm-up thread has returned)
        other = asyncio.ensure_future(other_task())
        await asyncio.gather(cleaning, other)

    asyncio.run(scenario())
    assert len(order) == 51
    assert 0 < order.index("other task") < 50, "the other task ran only after every buffered record"


def test_score_agent_scores_the_next_batch_while_one_is_scoring_and_commits_neither_early(
    harness: Harness,
) -> None:
    """Two batches in flight: batch 2 reaches the model while batch 1 is still being scored,
    yet no offset of either becomes committable, and no batch-2 record is sent, before batch
    1's records are with the producer. Batches finish in order."""
    gate = threading.Event()
    calls: list[list[str]] = []
    score = harness.runtime.score

    def gated(texts: Any) -> Any:
        calls.append([str(t) for t in texts])
        if len(calls) == 1:
            gate.wait(10)  # the first batch is slow
        return score(texts)

    harness.runtime.score = gated  # type: ignore[method-assign]

    async def until(predicate: Any, timeout_s: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, (calls, harness.sent)
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        async with harness.agent("score").test_context() as agent:
            to_message = agent.to_message

            def conducted(*args: Any, **kwargs: Any) -> Any:
                message = to_message(*args, **kwargs)
                message.incref()  # as faust's conductor does for the one stream reading the topic
                return message

            agent.to_message = conducted
            events = []
            for group in "ab":
                for i in range(3):
                    sid = f"t3_{group}{i}"
                    text = f"Bitcoin is doing fine today {group}{i}"
                    events.append(await agent.put(clean(sid, text), key=sid.encode(), wait=False))
                await until(lambda g=group: any(f"{g}0" in t for call in calls for t in call))
            # batch 1 is still in the model, and batch 2 reached it too
            assert not gate.is_set() and len(calls) >= 2
            await asyncio.sleep(0.2)
            assert harness.outputs("scored.posts") == []
            assert not any(event.message.acked for event in events)
            gate.set()
            await until(lambda: len(harness.outputs("scored.posts")) == 6)
            await until(lambda: all(event.message.acked for event in events))

    asyncio.run(scenario())
    order = [r["source_id"] for r in harness.outputs("scored.posts")]
    assert order == [f"t3_{g}{i}" for g in "ab" for i in range(3)]
