"""API keys, per-key sliding-window rate limits, body limits and CORS, against real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from api.security import create_api_key, list_api_keys, revoke_api_key
from core.settings import Settings
from tests.api.conftest import FakeRuntime, make_settings

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


@pytest.fixture
def secured(redis_settings: Settings) -> Iterator[tuple[TestClient, redis.Redis, Settings]]:
    settings = make_settings(
        redis_settings,
        prefix=redis_settings.redis.key_prefix,
        auth_enabled=True,
        rate_limit_per_minute=5,
        rate_limit_window_s=2,
        key_cache_s=0,
        open_metrics=False,
    )
    sync = redis.Redis.from_url(settings.redis.dsn)
    with TestClient(create_app(settings, runtime=FakeRuntime())) as c:
        yield c, sync, settings
    sync.close()


def test_keys_are_stored_hashed(secured: tuple[TestClient, redis.Redis, Settings]) -> None:
    _, sync, settings = secured
    prefix = settings.redis.key_prefix
    key, record = create_api_key(sync, prefix, "dashboard")
    stored: dict[bytes, bytes] = sync.hgetall(f"{prefix}:apikey:{record.key_id}")  # type: ignore[assignment]
    assert stored[b"hash"].startswith(b"sha256:") and key.encode() not in stored.values()
    assert key.split("_", 2)[2].encode() not in b"".join(stored.values())
    assert [k.key_id for k in list_api_keys(sync, prefix)] == [record.key_id]


def test_missing_invalid_and_revoked_keys_are_401(secured: tuple[TestClient, redis.Redis, Settings]) -> None:
    client, sync, settings = secured
    r = client.get("/v1/coins")
    assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM)
    assert "missing API key" in r.json()["detail"] and "WWW-Authenticate" in r.headers
    r = client.get("/v1/coins", headers={"X-API-Key": "cpk_000000000000_" + "x" * 43})
    assert r.status_code == 401 and "invalid" in r.json()["detail"]
    key, record = create_api_key(sync, settings.redis.key_prefix, "t")
    assert client.get("/v1/coins", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/v1/coins", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert client.get("/v1/coins", headers={"X-API-Key": tampered}).status_code == 401
    assert revoke_api_key(sync, settings.redis.key_prefix, record.key_id)
    assert client.get("/v1/coins", headers={"X-API-Key": key}).status_code == 401
    assert not revoke_api_key(sync, settings.redis.key_prefix, "ffffffffffff")


def test_health_open_metrics_closed_by_configuration(
    secured: tuple[TestClient, redis.Redis, Settings],
) -> None:
    client, sync, settings = secured
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 401
    key, _ = create_api_key(sync, settings.redis.key_prefix, "prom")
    assert client.get("/metrics", headers={"X-API-Key": key}).status_code == 200


def test_rate_limit_sliding_window_429_with_retry_after(
    secured: tuple[TestClient, redis.Redis, Settings],
) -> None:
    client, sync, settings = secured
    key, _ = create_api_key(sync, settings.redis.key_prefix, "busy")
    other, _ = create_api_key(sync, settings.redis.key_prefix, "quiet")
    headers = {"X-API-Key": key}
    remaining = [
        int(client.get("/v1/coins", headers=headers).headers["X-RateLimit-Remaining"]) for _ in range(5)
    ]
    assert remaining == [4, 3, 2, 1, 0]
    r = client.get("/v1/coins", headers=headers)
    assert r.status_code == 429 and r.headers["content-type"].startswith(PROBLEM)
    assert 1 <= int(r.headers["Retry-After"]) <= 2 and "rate limit of 5" in r.json()["detail"]
    assert client.get("/v1/coins", headers={"X-API-Key": other}).status_code == 200  # per key
    time.sleep(int(r.headers["Retry-After"]) + 0.1)
    assert client.get("/v1/coins", headers=headers).status_code == 200  # window slid


def test_per_key_limit_override(secured: tuple[TestClient, redis.Redis, Settings]) -> None:
    client, sync, settings = secured
    key, _ = create_api_key(sync, settings.redis.key_prefix, "tiny", rate_limit_per_minute=1)
    assert client.get("/v1/market", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/v1/market", headers={"X-API-Key": key}).status_code == 429


def test_body_limit_413(redis_settings: Settings) -> None:
    settings = make_settings(redis_settings, prefix=redis_settings.redis.key_prefix, max_body_bytes=2048)
    with TestClient(create_app(settings, runtime=FakeRuntime())) as client:
        big = {"texts": ["x" * 500] * 8}
        r = client.post("/v1/score", json=big)
        assert r.status_code == 413 and r.headers["content-type"].startswith(PROBLEM)
        assert "exceeds the limit of 2048 bytes" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked upload must be counted too
            yield b'{"texts": ["'
            for _ in range(10):
                yield b"y" * 400
            yield b'"]}'

        r = client.post("/v1/score", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert client.post("/v1/score", json={"texts": ["small"]}).status_code == 200


def test_cors(client: TestClient) -> None:
    allowed = "http://127.0.0.1:8501"
    r = client.options(
        "/v1/coins",
        headers={
            "Origin": allowed,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Key",
        },
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == allowed
    assert "x-api-key" in r.headers["access-control-allow-headers"].lower()
    r = client.get("/v1/coins", headers={"Origin": allowed})
    assert r.headers["access-control-allow-origin"] == allowed
    assert "Retry-After" in r.headers["access-control-expose-headers"]
    r = client.options(
        "/v1/coins", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
    assert (
        "access-control-allow-origin"
        not in client.get("/v1/coins", headers={"Origin": "https://evil.example"}).headers
    )
