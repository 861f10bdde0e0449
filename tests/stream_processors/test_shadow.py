"""Shadow scoring and the review queue: the agents through ``test_context()`` (topic sends
captured, no broker) writing to the real local Redis, and MLflow logging against the real
registry. The models are test doubles: what is under test is the agents' bookkeeping."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog.testing
from prometheus_client import REGISTRY

from core.settings import Settings, load_settings
from schemas.events import CleanPost, Feedback, ScoredPost, SentimentLabel, Source, WindowSize, content_hash
from schemas.redis_keys import RedisKeys
from scoring.holder import ModelHolder
from scoring.registry_uri import ModelLoadError
from stream_processors.agents.shadow import ShadowAgent, in_share, mlflow_metrics, registry_mlflow_logger
from stream_processors.app import create_app
from tests.api.seed import make_window
from tests.stream_processors.fakes import FakeRuntime, FakeScore
from views import RedisViewWriter

pytestmark = pytest.mark.integration

CHAMPION = "champ/1"
CHALLENGER_URI = "models:/shadow-test@challenger"


@dataclass(frozen=True)
class MemberScore(FakeScore):
    """A verdict that reports its ensemble members' split, as the real runtime does."""

    member_disagreement: float | None = None
    members_agree: bool | None = None


class ScriptedRuntime(FakeRuntime):
    """Labels texts by a word in them ("neg", "neutral-ish", "weird"), otherwise positive."""

    def score(self, texts: Sequence[object]) -> list[FakeScore]:
        self.calls.append([str(t) for t in texts])
        out: list[FakeScore] = []
        for text in map(str, texts):
            if "refuse-me" in text:
                out.append(FakeScore(None, None, None, None, None, None, self.model_version, "refused"))
            elif "weird" in text:
                out.append(FakeScore("bogus", 0.1, 0.5, 0.2, 0.3, 0.5, self.model_version))
            elif "neg" in text:
                out.append(
                    MemberScore("negative", -0.6, 0.7, 0.7, 0.2, 0.1, self.model_version, None, 0.1, True)
                )
            elif "unsure" in text:
                out.append(
                    MemberScore("neutral", 0.0, 0.4, 0.3, 0.4, 0.3, self.model_version, None, 0.6, False)
                )
            else:
                out.append(
                    MemberScore("positive", 0.6, 0.9, 0.05, 0.05, 0.9, self.model_version, None, 0.05, True)
                )
        return out


class Shadow:
    """An app with a champion and a challenger double; sends to the output topics are captured."""

    def __init__(self, settings: Settings, resolver: Callable[[str], str | None] | None) -> None:
        self.settings = settings
        self.champion = ScriptedRuntime(CHAMPION)
        self.challenger = FakeRuntime("champ/2")  # always "positive"
        self.resolver = resolver
        challenger = ModelHolder(CHALLENGER_URI, lambda uri: self.challenger, resolver)
        self.app = create_app(
            settings,
            holder=ModelHolder.holding(self.champion, "models:/shadow-test@champion"),
            challenger=challenger,
            challenger_resolver=resolver,
        )
        self.parts = self.app.parts
        self.agent: ShadowAgent = self.parts.shadow
        self.sent: list[tuple[str, dict[str, Any]]] = []
        t = self.parts.topics
        for topic in (t.scored, t.dead_letter, t.alerts, t.shadow, t.counts):
            topic.send = self._capture(topic.get_topic_name())  # type: ignore[method-assign]
        self.keys = RedisKeys(settings.redis.key_prefix)

    def _capture(self, name: str) -> Any:
        async def send(key: bytes | None = None, value: bytes | None = None, **kwargs: Any) -> Any:
            assert value is not None
            self.sent.append((name.split(".", 1)[1], json.loads(value)))
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        return send

    def faust_agent(self, name: str) -> Any:
        return next(a for a in self.app.agents.values() if a.name == name)

    def outputs(self, topic: str) -> list[dict[str, Any]]:
        return [record for name, record in self.sent if name == topic]

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, self.sent
            await asyncio.sleep(0.02)


@pytest.fixture
def make_shadow(isolated_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Shadow]]:
    def make(
        resolver: Callable[[str], str | None] | None = lambda uri: "champ/2", share: float = 1.0
    ) -> Shadow:
        settings = load_settings(
            home=tmp_path,
            kafka=isolated_settings.kafka.model_dump(),
            redis=isolated_settings.redis.model_dump(),
            mlflow=isolated_settings.mlflow.model_dump(),
            stream={"batch_within_s": 0.05, "scoring_process": False},
            learning={"shadow_share": share},
        )
        return Shadow(settings, resolver)

    yield make


@pytest.fixture
def rclient(isolated_settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(isolated_settings.redis.dsn)
    yield client
    client.close()


def post(sid: str, text: str, label: str = "positive", confidence: float = 0.9) -> ScoredPost:
    return ScoredPost(
        source_id=sid,
        event_time=datetime.now(UTC),
        source=Source.REDDIT,
        text=text,
        original_length=len(text),
        coins=["bitcoin"],
        content_hash=content_hash(text),
        label=SentimentLabel(label),
        score=0.5 if label == "positive" else -0.5,
        confidence=confidence,
        p_negative=0.1,
        p_neutral=0.1,
        p_positive=0.8,
        model_version=CHAMPION,
    )


def feedback(sid: str, label: str) -> bytes:
    return Feedback(
        source_id=sid, event_time=datetime.now(UTC), label=SentimentLabel(label), text="t", annotator="a"
    ).to_json()


def counters(client: redis.Redis, key: str) -> dict[str, int]:
    raw: dict[Any, Any] = client.hgetall(key)
    return {k.decode(): int(v) for k, v in raw.items()}


def ranked(client: redis.Redis, key: str) -> list[tuple[str, float]]:
    rows: list[Any] = client.zrevrange(key, 0, -1, withscores=True)
    return [(member.decode(), float(score)) for member, score in rows]


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_no_challenger_means_no_verdicts_no_errors_and_one_log_line(
    make_shadow: Callable[..., Shadow], rclient: redis.Redis
) -> None:
    def no_alias(uri: str) -> str | None:
        raise ModelLoadError(f"cannot resolve {uri}: alias not found")

    shadow = make_shadow(resolver=no_alias)
    skipped = sample("cryptopulse_stream_shadow_skipped_total", reason="no_challenger") or 0.0

    async def scenario() -> list[Any]:
        with structlog.testing.capture_logs() as logs:
            async with shadow.faust_agent("shadow").test_context() as agent:
                for i in range(3):
                    await agent.put(post(f"n{i}", "bitcoin up").to_json(), key=f"n{i}".encode())
                for _ in range(3):
                    await shadow.agent.poll_challenger()
                await asyncio.sleep(0.3)
        await shadow.parts.publisher.close()
        return logs

    logs = asyncio.run(scenario())
    assert shadow.outputs("scored.shadow") == [] and shadow.outputs("deadletter") == []
    assert shadow.challenger.calls == [] and not shadow.agent.holder.loaded
    assert sample("cryptopulse_stream_shadow_skipped_total", reason="no_challenger") == skipped + 3
    assert [e for e in logs if e["log_level"] in ("error", "warning")] == []
    assert [e["event"] for e in logs if "shadow" in str(e["event"])] == ["shadow: no challenger; idle"]
    assert list(rclient.scan_iter(f"{shadow.keys.prefix}:shadow:*")) == []


def test_challenger_verdicts_stats_metrics_and_review(
    make_shadow: Callable[..., Shadow], rclient: redis.Redis
) -> None:
    shadow = make_shadow()
    posts = [post(f"a{i}", f"bitcoin pumps {i}") for i in range(3)]
    posts += [post(f"d{i}", f"bitcoin dumps {i}", "negative", 0.8) for i in range(2)]

    async def scenario() -> None:
        async with shadow.faust_agent("shadow").test_context() as agent:
            for p in posts:
                await agent.put(p.to_json(), key=p.source_id.encode())
            await shadow.until(lambda: len(shadow.outputs("scored.shadow")) == 5)
            await agent.put(posts[0].to_json(), key=b"a0")  # redelivered: not counted twice
            await asyncio.sleep(0.3)
        await shadow.parts.publisher.close()

    asyncio.run(scenario())
    verdicts = {v["source_id"]: v for v in shadow.outputs("scored.shadow")}
    assert len(shadow.outputs("scored.shadow")) == 5
    assert {sid: v["agree"] for sid, v in verdicts.items()} == {
        "a0": True, "a1": True, "a2": True, "d0": False, "d1": False
    }  # fmt: skip
    assert {
        (v["champion_version"], v["challenger_version"], v["challenger_label"]) for v in verdicts.values()
    } == {(CHAMPION, "champ/2", "positive")}
    stats = counters(rclient, shadow.keys.shadow_stats(CHAMPION, "champ/2"))
    assert stats == {
        "records": 5,
        "agree": 3,
        "champion_positive": 3,
        "champion_negative": 2,
        "challenger_positive": 5,
    }
    assert sample("cryptopulse_stream_shadow_agreement", champion=CHAMPION, challenger="champ/2") == 0.6
    assert sample("cryptopulse_stream_shadow_records", champion=CHAMPION, challenger="champ/2") == 5
    assert sample(
        "cryptopulse_stream_shadow_verdicts_total", champion=CHAMPION, challenger="champ/2", agree="false"
    )
    # the two disagreements went to the review queue, ranked above anything without one
    queue = ranked(rclient, shadow.keys.review_queue())
    assert sorted(sid for sid, _ in queue) == ["d0", "d1"]
    assert all(score == pytest.approx(0.2 + 1.0) for _, score in queue)
    doc = json.loads(rclient.get(shadow.keys.review_post("d0")) or b"{}")
    assert (doc["reasons"], doc["challenger_label"], doc["label"]) == (
        ["challenger_disagrees"],
        "positive",
        "negative",
    )


def test_share_scores_a_deterministic_part(make_shadow: Callable[..., Shadow]) -> None:
    ids = [f"t3_{i}" for i in range(400)]
    chosen = {sid for sid in ids if in_share(sid, 0.5)}
    assert 150 < len(chosen) < 250  # about half
    assert chosen == {sid for sid in ids if in_share(sid, 0.5)}  # the same every time
    assert all(in_share(sid, 1.0) for sid in ids) and not any(in_share(sid, 0.0) for sid in ids)

    shadow = make_shadow(share=0.5)
    sids = ids[:40]

    async def scenario() -> None:
        async with shadow.faust_agent("shadow").test_context() as agent:
            for sid in sids:
                await agent.put(post(sid, f"bitcoin {sid}").to_json(), key=sid.encode())
            # live posts only: one read long after it was scored is not shadow-scored
            await agent.put(post("old", "bitcoin old").to_json(), key=None, timestamp=time.time() - 3600)
            await shadow.until(lambda: len(shadow.outputs("scored.shadow")) == len(chosen & set(sids)))
            await asyncio.sleep(0.3)
        await shadow.parts.publisher.close()

    asyncio.run(scenario())
    assert {v["source_id"] for v in shadow.outputs("scored.shadow")} == chosen & set(sids)


def test_feedback_accuracy_of_champion_and_challenger(
    make_shadow: Callable[..., Shadow], rclient: redis.Redis
) -> None:
    shadow = make_shadow()

    async def scenario() -> None:
        async with shadow.faust_agent("shadow").test_context() as agent:
            await agent.put(post("f_agree", "bitcoin up").to_json(), key=b"f_agree")
            await agent.put(post("f_split", "bitcoin down", "negative").to_json(), key=b"f_split")
            await shadow.until(lambda: len(shadow.outputs("scored.shadow")) == 2)
        async with shadow.faust_agent("shadow_feedback").test_context() as agent:
            await agent.put(feedback("f_agree", "positive"), key=b"f_agree")  # both right
            await agent.put(feedback("f_split", "negative"), key=b"f_split")  # champion right
            await agent.put(feedback("f_split", "positive"), key=b"f_split")  # a second answer: not recounted
            await agent.put(feedback("never_shadowed", "neutral"), key=b"never_shadowed")
            await agent.put(b"{broken", key=b"fb")
            await shadow.until(lambda: len(shadow.outputs("deadletter")) == 1)
            await asyncio.sleep(0.2)
        await shadow.parts.publisher.close()

    asyncio.run(scenario())
    stats = counters(rclient, shadow.keys.shadow_stats(CHAMPION, "champ/2"))
    assert (stats["feedback"], stats["champion_correct"], stats["challenger_correct"]) == (2, 2, 1)
    labels = {"champion": CHAMPION, "challenger": "champ/2"}
    assert sample("cryptopulse_stream_shadow_feedback_accuracy", **labels, model="champion") == 1.0
    assert sample("cryptopulse_stream_shadow_feedback_accuracy", **labels, model="challenger") == 0.5
    assert sample("cryptopulse_stream_shadow_feedback_labels", **labels) == 2
    dead = shadow.outputs("deadletter")[0]
    assert (dead["reason"], dead["component"], dead["payload"]) == (
        "invalid_schema",
        "stream.shadow",
        "{broken",
    )


def test_bad_records_are_dead_lettered_and_the_agent_carries_on(make_shadow: Callable[..., Shadow]) -> None:
    shadow = make_shadow()
    shadow.challenger = ScriptedRuntime("champ/2")  # before the first poll loads it

    async def scenario() -> None:
        async with shadow.faust_agent("shadow").test_context() as agent:
            await agent.put(b"{broken", key=b"x1")
            await agent.put(post("r1", "refuse-me bitcoin").to_json(), key=b"r1")
            await agent.put(post("w1", "weird bitcoin").to_json(), key=b"w1")  # the verdict cannot be built
            await agent.put(post("ok1", "bitcoin fine").to_json(), key=b"ok1")
            await shadow.until(lambda: len(shadow.outputs("deadletter")) == 3)
            await shadow.until(lambda: len(shadow.outputs("scored.shadow")) == 1)
        await shadow.parts.publisher.close()

    asyncio.run(scenario())
    dead = {d["source_id"]: d for d in shadow.outputs("deadletter")}
    assert {d["component"] for d in dead.values()} == {"stream.shadow"}
    assert dead["r1"]["reason"] == "scoring_failed" and "refused" in dead["r1"]["detail"]
    assert dead["w1"]["reason"] == "unhandled_error" and "ValueError" in dead["w1"]["detail"]
    assert [d["reason"] for sid, d in dead.items() if sid not in ("r1", "w1")] == ["invalid_schema"]
    assert [v["source_id"] for v in shadow.outputs("scored.shadow")] == ["ok1"]


def clean(sid: str, text: str) -> bytes:
    return CleanPost(
        source_id=sid,
        event_time=datetime.now(UTC),
        source=Source.REDDIT,
        text=text,
        original_length=len(text),
        coins=["bitcoin"] if "bitcoin" in text else ["ethereum"],
        content_hash=content_hash(text),
    ).to_json()


def test_score_agent_fills_the_review_queue(make_shadow: Callable[..., Shadow], rclient: redis.Redis) -> None:
    """Low confidence and member disagreement rank a post; a shifted coin raises every post
    about it; posts with feedback stay out; confident unanimous posts are not offered."""
    shadow = make_shadow()
    prefix = shadow.keys.prefix
    now = datetime.now(UTC)
    start = now - timedelta(seconds=now.timestamp() % 300) - timedelta(seconds=300)
    shifted = make_window("bitcoin", WindowSize.FIVE_MINUTES, start).model_copy(
        update={"sentiment_zscore": 3.5, "sentiment_change": 0.1}
    )
    views = RedisViewWriter(rclient, prefix)
    views.add_trend_windows([shifted], publish=False)
    views.flush()
    rclient.sadd(shadow.keys.review_done(), "s_done")
    texts = {
        "s_unsure": "ethereum unsure",  # confidence 0.4, members split: 0.6 + 0.6
        "s_calm": "ethereum fine",  # confident, unanimous, quiet coin: not offered
        "s_shift": "bitcoin fine",  # confident but its coin just shifted: 0.1 + 0.05 + 1.0
        "s_done": "ethereum unsure again",  # already has feedback
    }

    async def scenario() -> None:
        async with shadow.faust_agent("score").test_context() as agent:
            for sid, text in texts.items():
                await agent.put(clean(sid, text), key=sid.encode())
            await shadow.until(lambda: len(shadow.outputs("scored.posts")) == 4)
            await shadow.until(lambda: rclient.zcard(shadow.keys.review_queue()) == 2)
            await asyncio.sleep(0.2)
        await shadow.parts.publisher.close()

    asyncio.run(scenario())
    queue = ranked(rclient, shadow.keys.review_queue())
    assert [sid for sid, _ in queue] == ["s_unsure", "s_shift"]
    assert queue[0][1] == pytest.approx(1.2) and queue[1][1] == pytest.approx(1.15)
    unsure = json.loads(rclient.get(shadow.keys.review_post("s_unsure")) or b"{}")
    assert unsure["reasons"] == ["low_confidence", "members_disagree"] and unsure["challenger_label"] is None
    assert json.loads(rclient.get(shadow.keys.review_post("s_shift")) or b"{}")["reasons"] == ["coin_shift"]
    assert rclient.get(shadow.keys.review_post("s_done")) is None


def test_mlflow_logging_on_the_challenger_run(isolated_settings: Settings) -> None:
    from scoring.registry_uri import mlflow_client

    client = mlflow_client(isolated_settings)
    experiment = client.get_experiment_by_name("cryptopulse-stream-tests")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("cryptopulse-stream-tests")
    )
    run = client.create_run(experiment_id)
    name = f"shadow-test-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    try:
        mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        stats = {"records": 10, "agree": 7, "feedback": 4, "champion_correct": 2, "challenger_correct": 3}
        registry_mlflow_logger(isolated_settings)(f"{name}/0", f"{name}/{mv.version}", stats)
        logged = client.get_run(run.info.run_id).data
        assert logged.metrics == {
            "shadow_records": 10.0,
            "shadow_agreement": 0.7,
            "shadow_feedback_labels": 4.0,
            "shadow_champion_accuracy": 0.5,
            "shadow_challenger_accuracy": 0.75,
        }
        assert logged.tags["shadow.champion"] == f"{name}/0"
        with pytest.raises(ValueError, match="not a registry version"):
            registry_mlflow_logger(isolated_settings)("a", "local-dir-model", stats)
    finally:
        client.delete_registered_model(name)
        client.delete_run(run.info.run_id)
    assert mlflow_metrics({"records": 0}) == {"shadow_records": 0.0, "shadow_feedback_labels": 0.0}


def test_mlflow_timer_logs_current_pairs_and_survives_failures(
    make_shadow: Callable[..., Shadow], rclient: redis.Redis
) -> None:
    shadow = make_shadow()
    RedisViewWriter(rclient, shadow.keys.prefix).count_shadow(CHAMPION, "champ/2", {"records": 4, "agree": 1})
    calls: list[tuple[str, str, dict[str, int]]] = []

    def record(champion: str, challenger: str, stats: dict[str, int]) -> None:
        calls.append((champion, challenger, stats))

    def fail(champion: str, challenger: str, stats: dict[str, int]) -> None:
        raise ConnectionError("mlflow is away")

    async def scenario() -> tuple[int, int]:
        await shadow.agent.poll_challenger()  # loads the challenger: the pair in service
        shadow.agent.mlflow_log = record
        logged = await shadow.agent.log_to_mlflow()
        shadow.agent.mlflow_log = fail
        failed = await shadow.agent.log_to_mlflow()
        await shadow.parts.publisher.close()
        return logged, failed

    assert asyncio.run(scenario()) == (1, 0)
    assert calls == [(CHAMPION, "champ/2", {"records": 4, "agree": 1})]


def test_the_real_runtime_reports_its_members_split(tiny_model_dir: Path) -> None:
    """The review queue's member signal: the runtime's own transformer and linear members,
    from the same pass that scores the batch, reach the batch result per post."""
    import numpy as np

    from scoring.runtime import SentimentRuntime
    from stream_processors.scorer import score_batch

    runtime = SentimentRuntime(tiny_model_dir, model_version="tiny/1")
    texts = ["Bitcoin to the moon today", "Exchange hacked, funds lost", "Ethereum flat", "gm"]
    scores = runtime.score([*texts, ""])
    assert scores[-1].member_disagreement is None and scores[-1].members_agree is None
    p_t, p_l = runtime.transformer_proba(texts), runtime.linear_proba(texts)
    for row, s in enumerate(scores[:-1]):
        assert s.member_disagreement == pytest.approx(0.5 * np.abs(p_t[row] - p_l[row]).sum(), abs=1e-6)
        assert s.members_agree == (int(np.argmax(p_t[row])) == int(np.argmax(p_l[row])))
    assert runtime.ensemble_proba(texts) == pytest.approx(
        np.array([[s.p_negative, s.p_neutral, s.p_positive] for s in scores[:-1]])
    )
    posts = [CleanPost.from_json(clean(f"t3_m{i}", text)) for i, text in enumerate(texts)]
    result = score_batch(runtime, posts)
    assert set(result.members) == {p.source_id for p in result.scored}
    assert all(0.0 <= split.distance <= 1.0 for split in result.members.values())


# -- the real worker, registry and broker ---------------------------------------------------------


@pytest.fixture(scope="module")
def registered_model(platform: Settings) -> Iterator[tuple[str, list[str]]]:
    """The tiny real model registered twice under a unique name (champion -> version 1)."""
    from tests.stream_processors.model_fixture import delete_model, register_versions, tiny_model_dir

    try:
        artifact = tiny_model_dir(platform)
    except ImportError as exc:  # the training extras are not installed here
        pytest.skip(f"cannot train the tiny test model: {exc}")
    name = f"test-shadow-{uuid.uuid4().hex[:8]}"
    yield name, register_versions(platform, artifact, name, count=2)
    delete_model(platform, name)


def shadow_log(worker: Any) -> str:
    """The worker log's lines about models and shadow scoring (faust's timer noise left out)."""
    wanted = ("shadow", "challenger", "model", "ERROR", "Traceback")
    lines = worker.tail(200_000).splitlines()
    return "\n".join(line[:400] for line in lines if any(w in line for w in wanted))


@pytest.mark.slow
def test_worker_follows_the_challenger_alias_and_shadow_scores_live_posts(
    isolated_settings: Settings, registered_model: tuple[str, list[str]], tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from core.kafka import EventProducer
    from schemas.events import RedditPost
    from schemas.topics import FEEDBACK, RAW_REDDIT, SHADOW_SCORED
    from tests.ports import free_port
    from tests.stream_processors.harness import OutputReader, WorkerProcess, read_all, worker_env

    settings = load_settings(
        home=tmp_path / "home",
        kafka=isolated_settings.kafka.model_dump(),
        redis=isolated_settings.redis.model_dump(),
        mlflow=isolated_settings.mlflow.model_dump(),
    )
    name, versions = registered_model
    champion, challenger = f"{name}/{versions[0]}", f"{name}/{versions[1]}"
    keys = RedisKeys(settings.redis.key_prefix)
    client = redis.Redis.from_url(settings.redis.dsn, decode_responses=True)
    registry = MlflowClient(tracking_uri=settings.mlflow.uri, registry_uri=settings.mlflow.uri)
    port = free_port()
    env = worker_env(
        settings,
        model_uri=f"models:/{name}@champion",
        web_port=port,
        CRYPTOPULSE_STREAM__MODEL_POLL_S="1",
        CRYPTOPULSE_STREAM__SCORING_PROCESS="false",  # both models in the worker: a lighter test
    )
    worker = WorkerProcess(env, tmp_path / "worker.log", port).start()
    reader = OutputReader(settings)
    reddit = RAW_REDDIT.name(settings)

    def produce(ids: list[str]) -> None:
        with EventProducer(settings, component="test") as producer:
            for i, sid in enumerate(ids):
                title = f"Honestly bitcoin {['looks strong', 'is crashing hard'][i % 2]} today, post {sid}"
                producer.send(
                    reddit,
                    RedditPost(source_id=sid, event_time=datetime.now(UTC), subreddit="Bitcoin", title=title),
                )

    def verdicts() -> dict[str, dict[str, Any]]:
        return {
            json.loads(v)["source_id"]: json.loads(v)
            for _, _, _, v in read_all(settings, SHADOW_SCORED.name(settings))
        }

    try:
        worker.wait_ready(timeout_s=300)  # two models, each in its own process, on a busy machine
        before = [f"t3_before{i}" for i in range(6)]
        produce(before)
        assert not reader.wait_for(before, timeout_s=120), worker.diagnose()
        time.sleep(2)
        assert verdicts() == {}  # no challenger: nothing shadow-scored, and the worker is fine

        registry.set_registered_model_alias(name, "challenger", versions[1])
        deadline = time.monotonic() + 240
        needle = f'cryptopulse_stream_challenger_info{{model_version="{challenger}"}} 1.0'
        while time.monotonic() < deadline and needle not in worker.metrics():
            time.sleep(0.5)
        assert needle in worker.metrics(), shadow_log(worker)

        after = [f"t3_after{i}" for i in range(8)]
        produce(after)
        assert not reader.wait_for(after, timeout_s=120), worker.diagnose()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and set(verdicts()) != set(after):
            time.sleep(0.5)
        shadow = verdicts()
        assert set(shadow) == set(after), shadow_log(worker)
        assert {(v["champion_version"], v["challenger_version"]) for v in shadow.values()} == {
            (champion, challenger)
        }
        scored = {r["source_id"]: r for r in reader.scored}
        # the same artifact twice: the challenger agrees with every champion verdict
        assert all(v["agree"] and v["challenger_label"] == scored[sid]["label"] for sid, v in shadow.items())
        stats_key = keys.shadow_stats(champion, challenger)
        assert {k: int(v) for k, v in client.hgetall(stats_key).items() if k in ("records", "agree")} == {
            "records": 8,
            "agree": 8,
        }

        with EventProducer(settings, component="test") as producer:
            for sid in after[:2]:
                label = SentimentLabel(scored[sid]["label"])
                producer.send(
                    FEEDBACK.name(settings),
                    Feedback(
                        source_id=sid, event_time=datetime.now(UTC), label=label, text="t", annotator="a"
                    ),
                )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and client.hget(stats_key, "feedback") != "2":
            time.sleep(0.5)
        assert client.hmget(stats_key, ["feedback", "champion_correct", "challenger_correct"]) == [
            "2",
            "2",
            "2",
        ]
        metrics = worker.metrics()
        labels = f'challenger="{challenger}",champion="{champion}"'  # exposition sorts labels
        assert f"cryptopulse_stream_shadow_agreement{{{labels}}} 1.0" in metrics
        assert f'cryptopulse_stream_shadow_feedback_accuracy{{{labels},model="challenger"}} 1.0' in metrics

        # the review queue holds every low-confidence post, each with its candidate
        unsure = {sid for sid, r in scored.items() if r["confidence"] < 0.6}
        queued: set[str] = {str(member) for member in client.zrange(keys.review_queue(), 0, -1)}
        assert unsure <= queued
        for member in queued:
            doc = json.loads(client.get(keys.review_post(member)) or "{}")
            assert doc["source_id"] == member and doc["reasons"] and doc["challenger_label"] is None
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        worker.stop()
        reader.close()
        client.close()
