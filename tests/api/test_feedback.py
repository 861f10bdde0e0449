"""GET /v1/review and POST /v1/feedback against real Redis and real Kafka (isolated prefixes).

The review keys are written here exactly as the stream worker writes them (the
``review_queue``/``review_post``/``review_done`` contract in ``schemas.redis_keys``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api import cli as api_cli
from api.main import create_app
from api.scopes import Scope
from api.security import create_api_key
from core.kafka import topic_watermarks
from core.settings import Settings, load_settings
from model_export.feedback import snapshot_feedback
from schemas.events import ScoredPost, SentimentLabel, Source, content_hash, utc_now
from schemas.redis_keys import RedisKeys
from schemas.topics import FEEDBACK
from tests.api.conftest import FakeRuntime, make_settings
from tests.api.seed import seed_views
from tests.ports import free_port

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def scored(source_id: str, text: str, *, age: timedelta = timedelta(minutes=5), **over: Any) -> ScoredPost:
    when = utc_now() - age
    fields: dict[str, Any] = {
        "source_id": source_id,
        "event_time": when,
        "ingest_time": when,
        "source": Source.REDDIT,
        "text": text,
        "original_length": len(text),
        "coins": ["bitcoin"],
        "channel": "CryptoCurrency",
        "content_hash": content_hash(text),
        "label": SentimentLabel.NEUTRAL,
        "score": 0.05,
        "confidence": 0.41,
        "p_negative": 0.3,
        "p_neutral": 0.41,
        "p_positive": 0.29,
        "model_version": "champion/7",
        "scored_time": when,
    }
    fields.update(over)
    return ScoredPost(**fields)


def add_candidate(
    client: redis.Redis,
    prefix: str,
    post: ScoredPost,
    priority: float,
    reasons: list[str],
    challenger_label: str | None = None,
) -> None:
    """What the stream worker writes for a review candidate."""
    keys = RedisKeys(prefix)
    doc = {
        **post.model_dump(mode="json"),
        "priority": priority,
        "reasons": reasons,
        "challenger_label": challenger_label,
    }
    client.set(keys.review_post(post.source_id), json.dumps(doc))
    client.zadd(keys.review_queue(), {post.source_id: priority})


def feedback_records(settings: Settings) -> int:
    """Records on the feedback topic (nothing is compacted within a test: min lag is an hour)."""
    topic = FEEDBACK.name(settings)
    parts = topic_watermarks(settings, lambda name: name == topic)[topic]
    return sum(high - low for _, low, high in parts)


@pytest.fixture
def env(isolated_settings: Settings, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Real Kafka topics and a Redis prefix of this test only; the app with auth off."""
    settings = make_settings(isolated_settings, prefix=isolated_settings.redis.key_prefix).model_copy(
        update={"cache_dir": tmp_path}
    )
    sync = redis.Redis.from_url(settings.redis.dsn)
    prefix = settings.redis.key_prefix
    add_candidate(
        sync,
        prefix,
        scored("t3_low", "BTC looks shaky, not sure"),
        9.0,
        ["low_confidence", "challenger_disagrees"],
        "negative",
    )
    add_candidate(
        sync,
        prefix,
        scored("t3_mid", "ETH upgrade ships next week", coins=["ethereum"]),
        5.0,
        ["members_disagree"],
    )
    add_candidate(sync, prefix, scored("t3_done", "SOL flat today", coins=["solana"]), 7.0, ["coin_shift"])
    sync.sadd(RedisKeys(prefix).review_done(), "t3_done")
    sync.zadd(RedisKeys(prefix).review_queue(), {"t3_expired": 8.0})  # its post is gone
    add_candidate(sync, prefix, scored("t3_old", "old news", age=timedelta(days=45)), 1.0, ["low_confidence"])
    with TestClient(create_app(settings, runtime=FakeRuntime())) as client:
        yield {"client": client, "settings": settings, "redis": sync, "keys": RedisKeys(prefix)}
    sync.close()


def test_review_lists_the_queue_most_useful_first(env: dict[str, Any]) -> None:
    r = env["client"].get("/v1/review", params={"limit": 10})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    # t3_done already has feedback and t3_expired has no post left: neither is shown.
    assert [i["source_id"] for i in items] == ["t3_low", "t3_mid", "t3_old"]
    first = items[0]
    assert first["text"] == "BTC looks shaky, not sure"
    assert (first["label"], first["confidence"], first["priority"]) == ("neutral", 0.41, 9.0)
    assert first["reasons"] == ["low_confidence", "challenger_disagrees"]
    assert first["challenger_label"] == "negative"
    assert (first["coins"], first["source"]) == (["bitcoin"], "reddit")
    assert first["event_time"].endswith("Z")
    assert items[1]["challenger_label"] is None
    assert env["client"].get("/v1/review", params={"limit": 1}).json()["count"] == 1
    assert env["client"].get("/v1/review", params={"limit": 0}).status_code == 422


def test_feedback_is_produced_once_and_the_post_leaves_the_queue(env: dict[str, Any]) -> None:
    client: TestClient = env["client"]
    settings: Settings = env["settings"]
    body = {"source_id": "t3_low", "label": "negative", "note": "bearish in context"}

    r = client.post("/v1/feedback", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "accepted"
    record = r.json()["feedback"]
    assert record["source_id"] == "t3_low" and record["label"] == "negative"
    assert record["model_label"] == "neutral" and record["model_version"] == "champion/7"
    assert record["text"] == "BTC looks shaky, not sure" and record["annotator"] == "anonymous"
    assert record["note"] == "bearish in context" and record["coins"] == ["bitcoin"]
    assert feedback_records(settings) == 1
    assert env["redis"].sismember(env["keys"].review_done(), "t3_low")
    assert env["redis"].zscore(env["keys"].review_queue(), "t3_low") is None
    assert "t3_low" not in [i["source_id"] for i in client.get("/v1/review").json()["items"]]

    # The same answer again: the record already sent, nothing new on the topic.
    again = client.post("/v1/feedback", json=body)
    assert again.status_code == 200 and again.json()["status"] == "unchanged"
    assert again.json()["feedback"] == record
    assert feedback_records(settings) == 1

    # A changed mind is a new answer, and the last answer wins in the dataset.
    changed = client.post("/v1/feedback", json={"source_id": "t3_low", "label": "neutral"})
    assert changed.status_code == 202 and changed.json()["status"] == "accepted"
    assert client.post("/v1/feedback", json={"source_id": "t3_mid", "label": "positive"}).status_code == 202
    assert feedback_records(settings) == 3
    dataset = snapshot_feedback(settings)
    latest = {f.source_id: f.label.value for f in dataset.examples}
    assert latest == {"t3_low": "neutral", "t3_mid": "positive"}


def test_a_post_known_only_from_the_latest_posts_can_be_labelled(env: dict[str, Any]) -> None:
    seeded = seed_views(env["redis"], env["settings"].redis.key_prefix)
    post = seeded["posts"][0]
    r = env["client"].post("/v1/feedback", json={"source_id": post.source_id, "label": "positive"})
    assert r.status_code == 202, r.text
    assert r.json()["feedback"]["text"] == post.text


def test_bad_input_is_refused_with_a_reason(env: dict[str, Any]) -> None:
    client: TestClient = env["client"]
    unknown = client.post("/v1/feedback", json={"source_id": "t3_nosuch", "label": "positive"})
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith(PROBLEM)
    assert "t3_nosuch" in unknown.json()["detail"]

    bad_label = client.post("/v1/feedback", json={"source_id": "t3_low", "label": "bullish"})
    assert bad_label.status_code == 422
    assert any(e["loc"] == ["body", "label"] for e in bad_label.json()["errors"])

    old = client.post("/v1/feedback", json={"source_id": "t3_old", "label": "positive"})
    assert old.status_code == 410 and "30-day" in old.json()["detail"]

    missing = client.post("/v1/feedback", json={"label": "positive"})
    assert missing.status_code == 422
    assert feedback_records(env["settings"]) == 0


def test_the_label_scope_is_required_with_auth_on(env: dict[str, Any]) -> None:
    base: Settings = env["settings"]
    settings = make_settings(base, prefix=base.redis.key_prefix, auth_enabled=True, key_cache_s=0)
    prefix = settings.redis.key_prefix
    reader, _ = create_api_key(env["redis"], prefix, "reader")
    labeller, record = create_api_key(env["redis"], prefix, "labeller", scopes=frozenset({Scope.LABEL}))
    body = {"source_id": "t3_mid", "label": "positive"}
    with TestClient(create_app(settings, runtime=FakeRuntime())) as client:
        assert client.post("/v1/feedback", json=body).status_code == 401
        refused = client.post("/v1/feedback", json=body, headers={"X-API-Key": reader})
        assert refused.status_code == 403 and "--scope label" in refused.json()["detail"]
        assert client.get("/v1/review", headers={"X-API-Key": reader}).status_code == 200
        ok = client.post("/v1/feedback", json=body, headers={"X-API-Key": labeller})
        assert ok.status_code == 202, ok.text
        assert ok.json()["feedback"]["annotator"] == record.key_id
        # Idempotent per key: another key's identical answer is its own record.
        other, _ = create_api_key(env["redis"], prefix, "second", scopes=frozenset({Scope.LABEL}))
        assert client.post("/v1/feedback", json=body, headers={"X-API-Key": labeller}).status_code == 200
        assert client.post("/v1/feedback", json=body, headers={"X-API-Key": other}).status_code == 202
    assert feedback_records(settings) == 2


def test_apikey_create_offers_the_label_scope(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.cli.get_settings", lambda: env["settings"])
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    api_cli.register(app)
    created = CliRunner().invoke(app, ["apikey", "create", "reviewer", "--scope", "label"])
    assert created.exit_code == 0 and "with scopes label" in created.output, created.output
    key = re.findall(r"cpk_[0-9a-f]{12}_[A-Za-z0-9_-]+", created.output)[0]
    settings = make_settings(env["settings"], prefix=env["settings"].redis.key_prefix, auth_enabled=True)
    with TestClient(create_app(settings, runtime=FakeRuntime())) as client:
        body = {"source_id": "t3_low", "label": "negative"}
        r = client.post("/v1/feedback", json=body, headers={"X-API-Key": key})
    assert r.status_code == 202, r.text


def test_kafka_away_is_503_with_retry_after_and_nothing_marked_done(env: dict[str, Any]) -> None:
    base: Settings = env["settings"]
    away = load_settings(
        kafka={**base.kafka.model_dump(), "bootstrap_servers": f"127.0.0.1:{free_port()}"},
        redis=base.redis.model_dump(),
    )
    with TestClient(create_app(away, runtime=FakeRuntime())) as client:
        r = client.post("/v1/feedback", json={"source_id": "t3_low", "label": "negative"})
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "10" and r.headers["content-type"].startswith(PROBLEM)
        assert "feedback not recorded" in r.json()["detail"]
        # Still waiting for a label, and a retry is not mistaken for a repeat.
        assert not env["redis"].sismember(env["keys"].review_done(), "t3_low")
        assert client.get("/v1/review").json()["items"][0]["source_id"] == "t3_low"
        retry = client.post("/v1/feedback", json={"source_id": "t3_low", "label": "negative"})
        assert retry.status_code == 503
