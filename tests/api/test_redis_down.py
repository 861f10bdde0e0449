"""Redis away: every GET route that reads it answers 503 problem+json with Retry-After, never 500."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import load_settings
from tests.api.conftest import FakeRuntime

pytestmark = pytest.mark.unit
PATH_EXAMPLES = {"coin": "bitcoin", "source": "reddit", "topic": "cryptopulse.posts.scored"}
# Liveness must stay up and /metrics never reads Redis; /v1/admin reads Kafka, /v1/models
# the registry and the model-events topic (their own 503s: tests/api/test_models.py).
NOT_REDIS = ("/healthz", "/metrics", "/v1/admin/", "/v1/models")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_get_paths(client: TestClient) -> list[str]:
    """Every GET route the app documents (new ones included), with example path parameters."""
    paths = []
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        if "get" in operations and not any(path.startswith(p) for p in NOT_REDIS):
            paths.append(re.sub(r"\{(\w+)\}", lambda m: PATH_EXAMPLES[m[1]], path))
    return sorted(paths)


@pytest.fixture(params=[600, 0], ids=["limiter-on", "limiter-off"])
def redis_down_client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """The app with Redis on a closed port; with the anonymous limiter off the routes' own
    reads fail, not the limiter's."""
    settings = load_settings(
        redis={"url": f"redis://:secret@127.0.0.1:{_closed_port()}/0"},
        api={"anonymous_rate_limit_per_minute": request.param, "view_cache_s": 0},
    )
    with TestClient(create_app(settings, runtime=FakeRuntime())) as client:
        yield client


def test_every_get_route_is_503_with_retry_after(redis_down_client: TestClient) -> None:
    paths = _redis_get_paths(redis_down_client)
    assert {"/v1/coins", "/v1/stream", "/v1/info", "/readyz"} <= set(paths)
    for path in paths:
        r = redis_down_client.get(path)
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert int(r.headers["Retry-After"]) >= 1, path
        if path != "/readyz":  # readiness keeps its own body, with the failing check
            assert r.headers["content-type"] == "application/problem+json", path
            assert r.json()["type"].endswith("/redis-unavailable"), path
        assert "secret" not in r.text, path
    assert redis_down_client.get("/healthz").status_code == 200
