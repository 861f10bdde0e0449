"""End to end: replayed raw events -> worker -> Spark -> Redis -> API, counts consistent.

The pipeline processes are started through the same service manager as
``cryptopulse up``, in their own processes, against the real broker, Redis and a
real (tiny) model, isolated from other tests by topic and key prefixes and ports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from core.kafka import ensure_topics
from core.settings import Settings, load_settings
from cryptopulse.platform.manager import Platform
from cryptopulse.platform.pipeline import ApiService, SparkStreamingService, StreamWorkerService
from schemas.events import DeadLetter, ScoredPost
from schemas.topics import CATALOG, DEAD_LETTER, RAW_NEWS, RAW_REDDIT, SCORED_POSTS
from tests.cleanup import discard_run_data
from tests.e2e.loop_helpers import eventually, isolated_stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPLAYED = 120


def _read_all(settings: Settings, topic: str) -> list[bytes]:
    """Every record currently in ``topic`` (assign + read to the high watermarks)."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap, "group.id": f"e2e-{uuid.uuid4().hex}"}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        assignment = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, low))
        consumer.assign(assignment)
        values: list[bytes] = []
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            values.append(msg.value() or b"")
            if (msg.offset() or 0) + 1 >= ends.get(msg.partition() or 0, 0):
                ends.pop(msg.partition() or 0, None)
        return values
    finally:
        consumer.close()


@pytest.fixture
def pipeline(
    platform: Settings, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    env = {
        **isolated_stack_env(tmp_path / "home", tiny_model_dir, "e2e"),
        "CRYPTOPULSE_PRODUCER__REPLAY_RATE": "200",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    ensure_topics(settings, CATALOG)
    manager = Platform(settings, [StreamWorkerService, SparkStreamingService, ApiService])
    try:
        manager.up()
        yield settings
    finally:
        manager.down()
        discard_run_data(settings)


def test_replayed_events_reach_the_api_with_consistent_counts(pipeline: Settings):
    settings = pipeline
    replay = subprocess.run(
        [sys.executable, "-m", "cryptopulse", "produce", "replay", "--limit", str(REPLAYED), "--no-metrics"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert replay.returncode == 0, replay.stderr[-2000:]

    raw_ids: set[str] = set()
    for spec in (RAW_REDDIT, RAW_NEWS):
        raw_ids |= {json.loads(v)["source_id"] for v in _read_all(settings, spec.name(settings))}
    assert len(raw_ids) == REPLAYED

    def outcomes() -> tuple[dict[str, ScoredPost], dict[str, DeadLetter]] | None:
        scored = {
            p.source_id: p
            for p in map(ScoredPost.from_json, _read_all(settings, SCORED_POSTS.name(settings)))
        }
        dead = {
            d.source_id: d for d in map(DeadLetter.from_json, _read_all(settings, DEAD_LETTER.name(settings)))
        }
        return (scored, dead) if raw_ids <= set(scored) | set(dead) else None

    scored, dead = eventually(outcomes, 300, "every raw event to be scored or dead-lettered", every_s=3)
    # Exactly one outcome per input: nothing lost, nothing invented, nothing both.
    assert set(scored) | set(dead) == raw_ids
    assert not set(scored) & set(dead)
    assert len(scored) > REPLAYED // 2, f"too many dead letters: {Counter(d.reason for d in dead.values())}"
    assert all(p.model_version == "tiny-test" for p in scored.values())

    mentions = Counter(coin for post in scored.values() for coin in set(post.coins))
    assert len(mentions) >= 3, mentions
    api = f"http://127.0.0.1:{settings.api.port}"

    def api_volumes_match() -> dict[str, int] | None:
        got: dict[str, int] = {}
        for coin in mentions:
            response = httpx.get(
                f"{api}/v1/coins/{coin}/timeseries", params={"window": "1d", "limit": 10}, timeout=10
            )
            if response.status_code != 200:
                return None
            got[coin] = sum(point["volume"] for point in response.json()["points"])
        return got if got == dict(mentions) else None

    eventually(api_volumes_match, 300, f"API 1d volumes to equal scored mentions {dict(mentions)}", every_s=3)

    listed = httpx.get(f"{api}/v1/coins", params={"window": "1d"}, timeout=10)
    assert listed.status_code == 200
    listed_ids = {c["coin"] for c in listed.json()["coins"] if c["sentiment"]}
    assert set(mentions) <= listed_ids
    top = mentions.most_common(1)[0][0]
    sentiment = httpx.get(f"{api}/v1/coins/{top}/sentiment", params={"window": "1d"}, timeout=10)
    assert sentiment.status_code == 200
    series = httpx.get(f"{api}/v1/coins/{top}/timeseries", params={"window": "1d"}, timeout=10).json()
    assert sentiment.json()["latest"] == series["points"][-1]
    for post in scored.values():
        assert -1.0 <= post.score <= 1.0
    assert httpx.get(f"{api}/v1/coins/not-a-coin/sentiment", params={"window": "1d"}).status_code == 404
    assert httpx.get(f"{api}/v1/coins/{top}/sentiment", params={"window": "7y"}).status_code == 422
