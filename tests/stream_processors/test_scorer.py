"""Micro-batch scoring (fake runtime: batching logic only; hot swap is tests/scoring/test_holder.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from schemas.events import CleanPost, Source, content_hash
from stream_processors.live import CounterUpdate
from stream_processors.scorer import score_batch
from tests.stream_processors.fakes import FakeRuntime, FakeScore

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


def test_counter_mean() -> None:  # live key names: tests/schemas/test_redis_keys.py
    update = CounterUpdate("bitcoin", "1m", 60.0, 120.0, 4, 1.0)
    assert update.mean_score == 0.25 and update.as_dict()["mean_score"] == 0.25
    assert CounterUpdate("x", "5m", 0, 300, 0, 0.0).mean_score == 0.0


def test_an_invalid_verdict_fails_its_post_alone() -> None:
    """A verdict that does not make a valid ScoredPost (here an over-long model version for
    one text) dead-letters that post only; the rest of the batch is scored."""

    class OddRuntime(FakeRuntime):
        def score(self, texts: Sequence[object]) -> list[FakeScore]:
            results = super().score(texts)
            return [
                dataclasses.replace(r, model_version="v" * 500) if "odd" in str(t) else r
                for t, r in zip(texts, results, strict=True)
            ]

    result = score_batch(OddRuntime(), [clean(1), clean(2, "odd one out"), clean(3)])
    assert [p.source_id for p in result.scored] == ["t3_1", "t3_3"]
    [(post, reason)] = result.failed
    assert post.source_id == "t3_2" and reason.startswith("invalid verdict: ValidationError")
