"""``cryptopulse subscribe``: follow a catalog topic through the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from core.kafka import EventProducer
from core.settings import Settings
from schemas.events import Alert, AlertSeverity, ScoredPost, SentimentLabel, Source, content_hash
from schemas.topics import ALERTS, SCORED_POSTS

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def scored(i: int, coins: list[str], label: str = "positive") -> ScoredPost:
    text = f"post number {i} about {' and '.join(coins)} going up"
    return ScoredPost(
        source_id=f"t3_s{i}",
        event_time=T0 + timedelta(seconds=i),
        source=Source.REDDIT,
        text=text,
        original_length=len(text),
        coins=coins,
        content_hash=content_hash(text),
        label=SentimentLabel(label),
        score=0.6,
        confidence=0.7,
        p_negative=0.1,
        p_neutral=0.2,
        p_positive=0.7,
        model_version="test/1",
        scored_time=T0 + timedelta(seconds=i, milliseconds=300),
    )


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRYPTOPULSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix, "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "cryptopulse", "subscribe", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
    )


def test_subscribe_prints_decoded_records_filtered_by_coin(isolated_settings: Settings) -> None:
    topic = SCORED_POSTS.name(isolated_settings)
    posts = [scored(0, ["bitcoin"]), scored(1, ["ethereum"]), scored(2, ["ethereum", "bitcoin"])]
    with EventProducer(isolated_settings, component="test") as producer:
        for post in posts:
            producer.send(topic, post)
        producer.send_raw(topic, b'{"not": "a scored post"}', key="junk")

    result = run_cli(
        isolated_settings,
        "scored.posts",
        "--from-beginning",
        "--coin",
        "bitcoin",
        "--max",
        "2",
        "--timeout",
        "30",
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["source_id"] for r in lines) == ["t3_s0", "t3_s2"]
    assert all(ScoredPost.model_validate(r).model_version == "test/1" for r in lines)

    everything = run_cli(
        isolated_settings, "scored.posts", "--last", "10", "--timeout", "8", "--format", "pretty"
    )
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.count("positive") == 3 and "ethereum,bitcoin" in everything.stdout
    assert "did not match the scored.posts schema" in everything.stderr  # the junk record, reported
    assert "scored_post: " in everything.stderr


def test_subscribe_alerts_and_bad_arguments(isolated_settings: Settings) -> None:
    alert = Alert(
        source_id="data_quality:language:reddit:2026-11-28T12:00:00+00:00",
        event_time=T0,
        kind="data_quality",
        severity=AlertSeverity.WARNING,
        message="reddit: 8.0% of 100 records failed the language rule",
        value=0.08,
        threshold=0.05,
    )
    with EventProducer(isolated_settings, component="test") as producer:
        producer.send(ALERTS.name(isolated_settings), alert)
    shown = run_cli(isolated_settings, "alerts", "--last", "5", "--max", "1", "--format", "pretty")
    assert shown.returncode == 0, shown.stderr
    assert "WARNING" in shown.stdout and "data_quality" in shown.stdout and "language rule" in shown.stdout

    unknown = run_cli(isolated_settings, "no.such.topic", "--timeout", "1")
    assert unknown.returncode == 2 and "unknown topic 'no.such.topic'" in unknown.stderr
    assert "scored.posts" in unknown.stderr
