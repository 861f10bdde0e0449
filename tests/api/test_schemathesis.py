"""Property-based conformance of the API to its own OpenAPI document (schemathesis 4).

Every operation except the infinite SSE stream gets bounded generated requests, valid
and invalid; responses must match the documented status codes, media types and
schemas, and no request may produce a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings

from api.main import create_app
from api.scopes import Scope
from api.security import create_api_key
from core.settings import Settings, get_settings
from tests.api.conftest import FakeRuntime, LiveServer, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AUTH: dict[str, Any] = {"auth_enabled": True, "rate_limit_per_minute": 1_000_000}

# The document does not depend on Redis; the live server below serves the same app, auth on.
schema = schemathesis.openapi.from_dict(
    create_app(make_settings(get_settings(), **AUTH), load_model=False).openapi()
).exclude(path="/v1/stream")


@pytest.fixture
def secured_api(redis_settings: Settings, seeded: dict[str, Any]) -> Iterator[tuple[str, str]]:
    settings = make_settings(redis_settings, prefix=redis_settings.redis.key_prefix, **AUTH)
    key, _ = create_api_key(
        redis.Redis.from_url(settings.redis.dsn),
        settings.redis.key_prefix,
        "schemathesis",
        scopes=frozenset({Scope.ADMIN}),
    )
    with LiveServer(create_app(settings, runtime=FakeRuntime())) as server:
        yield server.url, key


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_openapi(case: Any, secured_api: tuple[str, str]) -> None:
    url, key = secured_api
    case.call_and_validate(base_url=url, headers={"X-API-Key": key}, timeout=15)
