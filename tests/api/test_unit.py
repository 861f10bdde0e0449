"""Fast tests without services: market mood maths, problem documents, limits, charts, key format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.dashboard.charts import gauge, mood_color, sentiment_chart, timeseries_frame
from api.dashboard.client import api_base_url
from api.main import create_app
from api.market import market_mood
from api.security import KEY_RE, hash_key
from core.settings import load_settings
from schemas.events import TrendWindow, WindowSize
from tests.api.seed import make_window

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)


def _windows(scores: list[float], returns: list[float | None] | None = None) -> list[TrendWindow]:
    out = []
    for i, (coin, score) in enumerate(zip(["bitcoin", "ethereum", "solana"], scores, strict=False)):
        w = make_window(coin, WindowSize.ONE_HOUR, T0, i).model_copy(
            update={
                "weighted_score": score,
                "price_return": (returns or [None] * 3)[i],
                "volume_zscore": None,
            }
        )
        out.append(w)
    return out


def test_market_mood_bounds_and_labels() -> None:
    bull = market_mood(WindowSize.ONE_HOUR, _windows([1.0, 1.0, 1.0], [0.05, 0.05, 0.05]))
    bear = market_mood(WindowSize.ONE_HOUR, _windows([-1.0, -1.0, -1.0], [-0.05, -0.05, -0.05]))
    flat = market_mood(WindowSize.ONE_HOUR, _windows([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]))
    assert bull.index == pytest.approx(100, abs=0.5) and bull.label == "extreme greed"
    assert bear.index == pytest.approx(0, abs=0.5) and bear.label == "extreme fear"
    assert flat.label in {"neutral", "fear"}  # breadth counts only strictly positive coins
    assert {p.name for p in flat.parts} == {"sentiment", "breadth", "momentum"}  # no z-scores: no activity


def test_market_mood_renormalizes_missing_parts() -> None:
    mood = market_mood(WindowSize.ONE_HOUR, _windows([0.5, 0.5, 0.5]))
    assert {p.name for p in mood.parts} == {"sentiment", "breadth"}
    expected = (75 * 0.5 + 100 * 0.2) / 0.7
    assert mood.index == pytest.approx(expected, abs=0.01)


def test_market_mood_empty() -> None:
    mood = market_mood(WindowSize.ONE_DAY, [])
    assert mood.index == 50 and mood.label == "no data" and mood.as_of is None


@pytest.fixture
def offline_client() -> TestClient:
    """The app with a Redis that is never contacted by these requests."""
    settings = load_settings(
        api={"max_body_bytes": 1024, "auth_enabled": False, "anonymous_rate_limit_per_minute": 0}
    )
    return TestClient(create_app(settings, load_model=False))


def test_body_limit_checks_declared_length(offline_client: TestClient) -> None:
    r = offline_client.post("/v1/score", content=b"x" * 5000, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/body-too-large")


def test_score_without_model_is_503_problem(offline_client: TestClient) -> None:
    r = offline_client.post("/v1/score", json={"texts": ["hello"]})
    assert r.status_code == 503 and r.json()["detail"].endswith("model loading disabled")


def test_healthz_needs_nothing(offline_client: TestClient) -> None:
    assert offline_client.get("/healthz").json() == {"status": "ok"}


def test_openapi_without_auth_has_no_security(offline_client: TestClient) -> None:
    doc = offline_client.get("/openapi.json").json()
    assert "securitySchemes" not in doc.get("components", {})
    assert "401" not in doc["paths"]["/v1/coins"]["get"]["responses"]
    secured = create_app(load_settings(api={"auth_enabled": True}), load_model=False).openapi()
    assert set(secured["components"]["securitySchemes"]) == {"APIKeyHeader", "HTTPBearer"}
    assert "429" in secured["paths"]["/v1/coins"]["get"]["responses"]
    assert "401" not in secured["paths"]["/healthz"]["get"]["responses"]  # open_health default
    assert "403" in secured["paths"]["/v1/admin/topics"]["get"]["responses"]
    assert "403" not in doc["paths"]["/v1/admin/topics"]["get"]["responses"]


def test_openapi_documents_429_only_where_a_limit_applies(offline_client: TestClient) -> None:
    unlimited = offline_client.get("/openapi.json").json()["paths"]["/v1/coins"]["get"]["responses"]
    anonymous = create_app(load_settings(), load_model=False).openapi()["paths"]["/v1/coins"]["get"]
    assert "429" not in unlimited and "429" in anonymous["responses"]
    assert "503" in unlimited  # Redis away


def test_key_format_and_hash() -> None:
    assert KEY_RE.match("cpk_0123456789ab_" + "A" * 43)
    assert not KEY_RE.match("cpk_0123456789ab")
    assert hash_key("k") == "sha256:" + __import__("hashlib").sha256(b"k").hexdigest()


def test_dashboard_helpers() -> None:
    assert api_base_url(load_settings(api={"host": "0.0.0.0", "port": 8123})) == "http://127.0.0.1:8123"
    assert api_base_url(load_settings(dashboard={"api_url": "http://api:9000/"})) == "http://api:9000"
    assert mood_color(10) != mood_color(90)
    gauge(42.0, "fear").to_dict()
    points = [
        make_window("bitcoin", WindowSize.FIVE_MINUTES, T0 + timedelta(minutes=5 * i), i).model_dump(
            mode="json"
        )
        for i in range(3)
    ]
    top, volume = sentiment_chart(timeseries_frame(points))
    assert top.to_dict() and volume.to_dict()
    assert timeseries_frame([]).empty
