"""POST /v1/score: limits, per-text errors, 503 without a model, and the real shared runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from tests.api.conftest import make_settings

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def test_score_with_fake_runtime(client: TestClient) -> None:
    r = client.post("/v1/score", json={"texts": ["BTC to the moon, bullish", "  "]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "fake/1" and body["count"] == 2
    first, second = body["results"]
    assert first["label"] == "positive" and first["coins"] == ["bitcoin"] and first["index"] == 0
    assert second["label"] is None and second["error"] == "empty text"


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"texts": []},
        {"texts": "just a string"},
        {"texts": [""]},
        {"texts": [1, 2]},
        {"texts": ["ok"], "extra": 1},
        {"texts": ["x" * 1001]},
        {"texts": ["ok"] * 65},
    ],
)
def test_score_rejects_bad_bodies(client: TestClient, payload: dict[str, object]) -> None:
    r = client.post("/v1/score", json=payload)
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM), r.text
    assert r.json()["errors"]


def test_score_invalid_json(client: TestClient) -> None:
    r = client.post("/v1/score", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)


def test_score_503_when_model_cannot_load(redis_settings: Settings, tmp_path: Path) -> None:
    settings = make_settings(redis_settings, prefix=redis_settings.redis.key_prefix)
    settings = settings.model_copy(
        update={"model": settings.model.model_copy(update={"uri": str(tmp_path / "none")})}
    )
    with TestClient(create_app(settings)) as client:  # really tries to load, and fails
        r = client.post("/v1/score", json={"texts": ["hello bitcoin"]})
        assert r.status_code == 503 and r.headers["content-type"].startswith(PROBLEM)
        assert "not loaded" in r.json()["detail"] and "does not exist" in r.json()["detail"]
        assert r.headers["Retry-After"]
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["checks"]["model"]["ok"] is False  # views still served
        assert client.get("/v1/info").json()["model"]["loaded"] is False
    strict = settings.model_copy(update={"api": settings.api.model_copy(update={"require_model": True})})
    with TestClient(create_app(strict)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "not ready"


@pytest.mark.slow
def test_score_with_real_runtime(redis_settings: Settings, tiny_model_dir: Path) -> None:
    settings = make_settings(redis_settings, prefix=redis_settings.redis.key_prefix)
    settings = settings.model_copy(
        update={"model": settings.model.model_copy(update={"uri": str(tiny_model_dir)})}
    )
    with TestClient(create_app(settings)) as client:  # loaded once at start-up from settings.model.uri
        assert client.get("/readyz").json()["model"]["loaded"] is True
        r = client.post(
            "/v1/score", json={"texts": ["Bitcoin is pumping hard, great day for BTC", "ETH crashed"]}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["count"] == 2
        for item in body["results"]:
            assert item["label"] in {"negative", "neutral", "positive"}
            assert item["p_negative"] + item["p_neutral"] + item["p_positive"] == pytest.approx(1.0, abs=1e-6)
        assert "bitcoin" in body["results"][0]["coins"]
        assert "ethereum" in body["results"][1]["coins"]

        text = "Bitcoin is pumping hard, great day for BTC"
        explained = client.post("/v1/score?explain=true", json={"texts": [text, " "]})
        assert explained.status_code == 200, explained.text
        first, blank = explained.json()["results"]
        assert first["label"] == body["results"][0]["label"]  # the same verdict, now with reasons
        assert first["explanation"] is not None and blank["explanation"] is None
        for span in first["explanation"]:
            assert text[span["start"] : span["end"]] == span["text"] and span["weight"] > 0
        plain = client.post("/v1/score", json={"texts": [text]}).json()["results"][0]
        assert plain["explanation"] is None
        many = client.post("/v1/score?explain=true", json={"texts": ["btc up strongly"] * 9}).json()
        assert many["explained"] == 8 and many["count"] == 9  # explanations cost: the first 8 only
        assert all(r["explanation"] is not None for r in many["results"][:8])
        assert many["results"][8]["explanation"] is None
