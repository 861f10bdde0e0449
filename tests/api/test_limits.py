"""Issue 16 API limits against real Redis: per-address rate limits with auth off, trusted
proxies, SSE stream caps and lifetime, revocation ending streams, the admin scope."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from api.scopes import Scope
from api.security import create_api_key, list_api_keys, revoke_api_key
from core.settings import Settings
from tests.api.conftest import FakeRuntime, make_settings

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


@pytest.fixture
def app_with(redis_settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """Builds TestClients over the test's Redis prefix with API overrides; closes them after."""
    opened: list[TestClient] = []

    def build(client: tuple[str, int] = ("10.0.0.7", 50000), **api: Any) -> TestClient:
        settings = make_settings(redis_settings, prefix=redis_settings.redis.key_prefix, **api)
        test_client = TestClient(create_app(settings, runtime=FakeRuntime()), client=client)
        test_client.__enter__()
        opened.append(test_client)
        return test_client

    yield build
    for test_client in opened:
        test_client.__exit__(None, None, None)


def test_anonymous_clients_are_rate_limited_by_address(app_with: Callable[..., TestClient]) -> None:
    client = app_with(anonymous_rate_limit_per_minute=3, rate_limit_window_s=2)
    remaining = [int(client.get("/v1/coins").headers["X-RateLimit-Remaining"]) for _ in range(3)]
    assert remaining == [2, 1, 0]
    # X-Forwarded-For is not believed by default: a new value is not a new bucket.
    r = client.get("/v1/coins", headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 429 and r.headers["content-type"].startswith(PROBLEM)
    assert 1 <= int(r.headers["Retry-After"]) <= 2
    assert r.json()["type"].endswith("/rate-limited") and "client 10.0.0.7" in r.json()["detail"]
    other = app_with(client=("10.0.0.8", 50000), anonymous_rate_limit_per_minute=3, rate_limit_window_s=2)
    assert other.get("/v1/coins").status_code == 200  # per address
    time.sleep(int(r.headers["Retry-After"]) + 0.1)
    assert client.get("/v1/coins").status_code == 200  # the window slid


def test_trusted_proxy_forwards_the_client_address(app_with: Callable[..., TestClient]) -> None:
    proxied = app_with(anonymous_rate_limit_per_minute=1, trusted_proxies=["10.0.0.0/24"])
    first = {"X-Forwarded-For": "198.51.100.1"}
    assert proxied.get("/v1/coins", headers=first).status_code == 200
    r = proxied.get("/v1/coins", headers=first)
    assert r.status_code == 429 and "client 198.51.100.1" in r.json()["detail"]
    assert proxied.get("/v1/coins", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200
    # A peer outside the trusted networks cannot choose its bucket with the header.
    direct = app_with(
        client=("192.0.2.5", 1), anonymous_rate_limit_per_minute=1, trusted_proxies=["10.0.0.0/24"]
    )
    assert direct.get("/v1/coins", headers={"X-Forwarded-For": "198.51.100.3"}).status_code == 200
    assert direct.get("/v1/coins", headers={"X-Forwarded-For": "198.51.100.4"}).status_code == 429


def test_no_anonymous_limit_when_set_to_zero(app_with: Callable[..., TestClient]) -> None:
    client = app_with(anonymous_rate_limit_per_minute=0)
    r = client.get("/v1/coins")
    assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers


def _open_stream(client: TestClient, **headers: str) -> tuple[threading.Thread, dict[str, Any]]:
    """GET /v1/stream in a thread (TestClient returns once the stream has ended)."""
    result: dict[str, Any] = {}

    def run() -> None:
        t0 = time.monotonic()
        r = client.get("/v1/stream", headers=headers)
        result.update(status=r.status_code, text=r.text, elapsed=time.monotonic() - t0)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("caps", "reason"),
    [
        ({"sse_max_streams": 1, "sse_max_streams_per_client": 5}, "maximum of 1 open streams"),
        ({"sse_max_streams": 100, "sse_max_streams_per_client": 1}, "client ip:10.0.0.7 already has"),
    ],
)
def test_stream_caps_429_and_lifetime(
    app_with: Callable[..., TestClient], caps: dict[str, int], reason: str
) -> None:
    client = app_with(sse_max_lifetime_s=2.0, **caps)
    streams = client.app.state.streams  # type: ignore[attr-defined]
    thread, first = _open_stream(client)
    _wait_until(lambda: streams.total == 1)
    r = client.get("/v1/stream")
    assert r.status_code == 429 and r.headers["content-type"].startswith(PROBLEM)
    assert r.headers["Retry-After"] == "5" and reason in r.json()["detail"]
    thread.join(timeout=15)
    # The lifetime ends the first stream cleanly (a final comment, then the end of the body).
    assert first["status"] == 200 and first["text"].endswith(": stream lifetime reached; reconnect\n\n")
    assert 2.0 <= first["elapsed"] < 10
    _wait_until(lambda: streams.total == 0)
    thread, again = _open_stream(client)
    thread.join(timeout=15)
    assert again["status"] == 200  # the slot was freed


def test_revoked_key_ends_its_open_stream(
    app_with: Callable[..., TestClient], sync_redis: redis.Redis
) -> None:
    client = app_with(auth_enabled=True, key_cache_s=1.0, sse_max_lifetime_s=30.0)
    prefix = client.app.state.cp.settings.redis.key_prefix  # type: ignore[attr-defined]
    key, record = create_api_key(sync_redis, prefix, "viewer")
    streams = client.app.state.streams  # type: ignore[attr-defined]
    thread, result = _open_stream(client, **{"X-API-Key": key})
    _wait_until(lambda: streams.open_for(record.key_id) == 1)
    assert revoke_api_key(sync_redis, prefix, record.key_id)
    thread.join(timeout=15)
    assert result["status"] == 200 and result["text"].endswith(": API key revoked\n\n")
    assert result["elapsed"] < 10  # far from the 30 s lifetime
    assert streams.total == 0


def test_admin_views_need_the_admin_scope(
    app_with: Callable[..., TestClient], sync_redis: redis.Redis
) -> None:
    client = app_with(auth_enabled=True, key_cache_s=0)
    prefix = client.app.state.cp.settings.redis.key_prefix  # type: ignore[attr-defined]
    reader, _ = create_api_key(sync_redis, prefix, "reader")
    admin, record = create_api_key(sync_redis, prefix, "dashboard", scopes=frozenset({Scope.ADMIN}))
    assert record.scopes == {Scope.ADMIN}
    assert [k.scopes for k in list_api_keys(sync_redis, prefix) if k.key_id == record.key_id] == [
        {Scope.ADMIN}
    ]
    for path in ("/v1/admin/topics", "/v1/admin/consumer-groups", "/v1/admin/topics/x/messages"):
        r = client.get(path, headers={"X-API-Key": reader})
        assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM), path
        assert "--scope admin" in r.json()["detail"]
    assert client.get("/v1/coins", headers={"X-API-Key": reader}).status_code == 200  # reads as before
    assert client.get("/v1/admin/topics", headers={"X-API-Key": admin}).status_code == 200
    doc = client.get("/openapi.json").json()
    assert "403" in doc["paths"]["/v1/admin/topics"]["get"]["responses"]
