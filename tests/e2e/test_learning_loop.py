"""End to end: the learning loop on the real stack, once around.

feedback arrives (POST /v1/feedback on posts the worker scored) -> the retraining service's
feedback trigger fires (its real steps: a stand-in training command that registers the tiny
artifact again, then ``cryptopulse retrain evaluate``) -> the new version is the
``challenger`` -> the worker shadow-scores live posts with it (``shadow:stats``, verdicts on
``scored.shadow``) -> ``promote`` passes the gate on that evidence -> the worker and the API
serve the new version -> ``rollback`` brings the old one back to both.

Real Kafka, Redis and MLflow, isolated by topic and key prefixes and a registered model of
its own; the worker is a real ``python -m stream_processors worker`` process, the API the
real app under uvicorn in this process (it loads and hot-swaps the model as in production).
Each piece is tested alone elsewhere; this checks that they fit together.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from api.main import create_app
from core.kafka import ensure_topics
from core.settings import Settings, load_settings
from model_export import registry
from retraining.service import Retrainer, default_steps
from retraining.triggers import Trigger
from schemas.redis_keys import RedisKeys
from schemas.topics import CATALOG, SHADOW_SCORED
from scoring.registry_uri import mlflow_client
from scoring.runtime import ARTIFACT_FILES
from tests.api.conftest import LiveServer
from tests.cleanup import discard_run_data
from tests.e2e.loop_helpers import eventually, produce_posts, register
from tests.ports import free_port
from tests.stream_processors.harness import REPO, OutputReader, WorkerProcess, read_all
from tests.stream_processors.model_fixture import delete_model

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

FEEDBACK_LABELS = 3
CHAMPION_F1, RETRAINED_F1 = 0.70, 0.80


@dataclass
class Loop:
    """The running stack of one test: settings, the worker, the API and readers."""

    settings: Settings
    artifact: Path
    worker: WorkerProcess
    api: httpx.Client
    app: Any
    reader: OutputReader
    redis: redis.Redis

    @property
    def name(self) -> str:
        return self.settings.mlflow.registered_model

    def label(self, version: str) -> str:
        return f"{self.name}/{version}"

    def score_all(self, prefix: str, count: int) -> dict[str, dict[str, Any]]:
        """Produce ``count`` live posts and wait until the worker scored each one."""
        ids = [f"t3_{prefix}{i}x{uuid.uuid4().hex[:6]}" for i in range(count)]
        produce_posts(self.settings, ids)
        missing = self.reader.wait_for(ids, timeout_s=120)
        assert not missing, f"not scored: {missing}\n{self.worker.diagnose()}"
        dead = [r for r in self.reader.dead if r["source_id"] in ids]
        assert not dead, dead
        return {r["source_id"]: r for r in self.reader.scored if r["source_id"] in ids}

    def worker_serves(self, version: str, timeout_s: float = 120) -> None:
        needle = f'cryptopulse_stream_model_info{{model_version="{self.label(version)}"}} 1.0'
        eventually(lambda: needle in self.worker.metrics(), timeout_s, f"the worker to serve {version}")

    def api_serves(self, version: str, timeout_s: float = 60) -> None:
        def answered() -> str | None:
            response = self.api.post("/v1/score", json={"texts": ["bitcoin to the moon"]})
            assert response.status_code == 200, response.text
            served = str(response.json()["model_version"])
            return served if served == self.label(version) else None

        eventually(answered, timeout_s, f"/v1/score to answer with {self.label(version)}")


@pytest.fixture
def loop(
    platform: Settings, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Loop]:
    """Settings in the environment (the worker and the retraining children read them there),
    version 1 registered as champion, the worker and the API running; all removed after."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "CRYPTOPULSE_HOME": str(tmp_path / "home"),
        "CRYPTOPULSE_CACHE_DIR": str(tmp_path / "cache"),
        "CRYPTOPULSE_KAFKA__BOOTSTRAP_SERVERS": platform.kafka.bootstrap,
        "CRYPTOPULSE_KAFKA__TOPIC_PREFIX": f"e2e-loop-{tag}",
        "CRYPTOPULSE_REDIS__URL": platform.redis.dsn,
        "CRYPTOPULSE_REDIS__KEY_PREFIX": f"e2e-loop-{tag}",
        "CRYPTOPULSE_MLFLOW__TRACKING_URI": platform.mlflow.uri,
        "CRYPTOPULSE_MLFLOW__REGISTERED_MODEL": f"cp-loop-{tag}",
        "CRYPTOPULSE_MLFLOW__EXPERIMENT": "cp-test-learning-loop",
        "CRYPTOPULSE_MODEL__URI": f"models:/cp-loop-{tag}@champion",
        "CRYPTOPULSE_STREAM__WEB_PORT": str(free_port()),
        "CRYPTOPULSE_STREAM__MODEL_POLL_S": "1",
        "CRYPTOPULSE_STREAM__SCORING_PROCESS": "false",  # one process fewer on a 2-core machine
        "CRYPTOPULSE_API__MODEL_POLL_S": "0.5",
        "CRYPTOPULSE_API__ANONYMOUS_RATE_LIMIT_PER_MINUTE": "0",
        "CRYPTOPULSE_LEARNING__SHADOW_ENABLED": "true",
        "CRYPTOPULSE_LEARNING__SHADOW_SHARE": "1",
        "CRYPTOPULSE_LEARNING__RETRAIN_FEEDBACK_LABELS": str(FEEDBACK_LABELS),
        "CRYPTOPULSE_LEARNING__PROMOTION_MIN_SHADOW_RECORDS": "4",
        "CRYPTOPULSE_LEARNING__PROMOTION_MIN_FEEDBACK_LABELS": str(FEEDBACK_LABELS),
        "CRYPTOPULSE_LEARNING__AUTO_PROMOTE": "false",  # the promotion is this test's own step
        "PYTHONPATH": str(REPO),  # the stand-in training command is a module of this repository
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    # A copy of its own: the shared tiny model's cache folder is rebuilt (and the old one
    # deleted) whenever another run changes the scoring code, and a version registered from
    # a half-gone folder is an empty artifact the worker cannot load.
    missing = [f for f in ARTIFACT_FILES if not (tiny_model_dir / f).exists()]
    assert not missing, f"{tiny_model_dir} is not a complete artifact: {missing} missing"
    artifact = Path(shutil.copytree(tiny_model_dir, tmp_path / "artifact"))
    ensure_topics(settings, CATALOG)
    worker: WorkerProcess | None = None
    reader: OutputReader | None = None
    client = redis.Redis.from_url(settings.redis.dsn, decode_responses=True)
    try:
        assert register(settings, artifact, CHAMPION_F1) == "1"
        assert registry.champion_version(settings) == "1"
        worker = WorkerProcess(dict(os.environ), tmp_path / "worker.log", settings.stream.web_port).start()
        app = create_app(settings)
        with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as api:
            reader = OutputReader(settings)
            worker.wait_ready(timeout_s=300)
            yield Loop(settings, artifact, worker, api, app, reader, client)
    finally:
        if worker is not None:
            worker.stop()
        if reader is not None:
            reader.close()
        client.close()
        with contextlib.suppress(Exception):
            delete_model(settings, settings.mlflow.registered_model)
        discard_run_data(settings)


def test_feedback_retrains_shadows_promotes_and_rolls_back(loop: Loop) -> None:
    settings, name = loop.settings, loop.name
    champion, challenger = loop.label("1"), loop.label("2")
    retrainer = Retrainer(
        settings,
        steps=default_steps(
            settings, [sys.executable, "-m", "tests.e2e.loop_helpers", str(loop.artifact), str(RETRAINED_F1)]
        ),
    )
    assert retrainer.tick() is None  # the first check only takes the baseline

    # 1. live posts scored by the champion
    first = loop.score_all("before", 4)
    assert {p["model_version"] for p in first.values()} == {champion}
    loop.api_serves("1")

    # 2. feedback arrives through the API, on posts the worker scored
    labelled = sorted(first)[:FEEDBACK_LABELS]
    for sid in labelled:

        def accepted(sid: str = sid) -> httpx.Response | None:
            response = loop.api.post("/v1/feedback", json={"source_id": sid, "label": "positive"})
            assert response.status_code in (202, 404), response.text  # 404 until the worker's
            return response if response.status_code == 202 else None  # Redis view has the post

        record = eventually(accepted, 30, f"feedback on {sid} to be accepted").json()["feedback"]
        assert record["model_version"] == champion and record["source_id"] == sid

    # 3. the feedback trigger fires; the run registers version 2 as challenger
    result = retrainer.tick()
    assert result is not None, "the feedback trigger did not fire"
    run_log = result.log_path.read_text(errors="replace")[-4000:]
    assert (result.trigger, result.outcome, result.version) == (Trigger.FEEDBACK, "succeeded", "2"), run_log
    assert any("feedback" in reason for reason in result.reasons), result.reasons
    assert result.feedback is not None and result.feedback["feedback_count"] == FEEDBACK_LABELS, run_log
    assert result.promotion is not None and "auto_promote is off" in result.promotion, result.promotion
    aliases = mlflow_client(settings).get_model_version(name, "2").aliases
    assert "challenger" in aliases and registry.champion_version(settings) == "1"
    assert retrainer.tick() is None  # the labels were consumed by the run

    # 4. the worker follows the challenger alias and shadow-scores new live posts
    needle = f'cryptopulse_stream_challenger_info{{model_version="{challenger}"}} 1.0'
    eventually(lambda: needle in loop.worker.metrics(), 120, "the worker to load the challenger")
    shadowed = loop.score_all("shadow", 6)
    stats_key = RedisKeys(settings.redis.key_prefix).shadow_stats(champion, challenger)

    def shadow_stats() -> dict[str, int] | None:
        stats = {k: int(v) for k, v in loop.redis.hgetall(stats_key).items() if k in ("records", "agree")}
        return stats if stats.get("records", 0) >= len(shadowed) else None

    stats = eventually(shadow_stats, 60, f"{stats_key} to count {len(shadowed)} records")
    verdicts = {
        v["source_id"]: v
        for v in (json.loads(value) for *_, value in read_all(settings, SHADOW_SCORED.name(settings)))
    }
    assert set(shadowed) <= set(verdicts)
    assert {(verdicts[s]["champion_version"], verdicts[s]["challenger_version"]) for s in shadowed} == {
        (champion, challenger)
    }
    # the same artifact twice: the challenger agrees with every champion verdict
    assert stats["agree"] == stats["records"]

    # 5. promote: the gate weighs the offline metrics, the shadow verdicts and the feedback
    decision = registry.promote("2", settings, actor="e2e")
    assert decision.allowed, decision.reason
    checks = {check.name: check.status for check in decision.checks}
    assert checks["weighted F1"] == "pass" and checks["shadow agreement"] == "pass", decision.checks
    assert checks["feedback accuracy"] == "pass", decision.checks
    assert decision.published is True and any("shadow agreement" in r for r in decision.reasons)
    assert registry.champion_version(settings) == "2"
    assert "challenger" not in mlflow_client(settings).get_model_version(name, "2").aliases

    # 6. the worker and the API serve the new version
    loop.worker_serves("2")
    loop.api_serves("2")
    promoted = loop.score_all("promoted", 3)
    assert {p["model_version"] for p in promoted.values()} == {challenger}

    # 7. rollback restores the old champion in both
    rolled = registry.rollback(settings, actor="e2e")
    assert (rolled.version, rolled.previous_version) == ("1", "2")
    assert registry.champion_version(settings) == "1"
    loop.worker_serves("1")
    loop.api_serves("1")
    restored = loop.score_all("rolledback", 3)
    assert {p["model_version"] for p in restored.values()} == {champion}
    assert loop.app.state.cp.model.swaps == 2
    assert loop.worker.proc is not None and loop.worker.proc.poll() is None, loop.worker.tail()
