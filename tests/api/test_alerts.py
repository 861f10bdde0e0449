"""/v1/alerts/subscriptions over real Redis: create (secret once), list own, delete, the
422s for bad webhooks, the per-key cap, scopes and owners with auth on, Redis away."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from api.scopes import Scope
from api.security import create_api_key
from core.settings import AlertingSettings, Settings, load_settings
from schemas.events import AlertSubscription
from schemas.redis_keys import RedisKeys
from tests.api.conftest import FakeRuntime, make_settings

PATH = "/v1/alerts/subscriptions"
HOOK = "https://hooks.example.com/services/T0/B0/abc"


def test_create_list_delete(client: TestClient, sync_redis: redis.Redis, redis_settings: Settings) -> None:
    r = client.post(PATH, json={"url": HOOK, "coin": "bitcoin", "kinds": ["volume_spike"], "threshold": 3})
    assert r.status_code == 201, r.text
    created = r.json()
    sub, secret = created["subscription"], created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert sub["coin"] == "bitcoin" and sub["kinds"] == ["volume_spike"] and sub["threshold"] == 3
    # Stored for the alerting service, with its owner and the secret it signs with.
    keys = RedisKeys(redis_settings.redis.key_prefix)
    stored = AlertSubscription.model_validate_json(sync_redis.get(keys.alert_subscription(sub["id"])) or b"")
    assert stored.owner == "local" and stored.secret == secret
    assert sync_redis.sismember(keys.alert_subscriptions(), sub["id"])

    second = client.post(PATH, json={"url": "http://127.0.0.1:9/hook"}).json()["subscription"]
    assert second["coin"] is None and len(second["kinds"]) == 4  # all coins, every kind

    listed = client.get(PATH).json()
    assert listed["count"] == 2
    assert [s["id"] for s in listed["subscriptions"]] == [sub["id"], second["id"]]
    assert secret not in client.get(PATH).text  # the secret is shown once, at creation

    assert client.delete(f"{PATH}/{sub['id']}").status_code == 204
    assert client.delete(f"{PATH}/{sub['id']}").status_code == 404
    assert not sync_redis.exists(keys.alert_subscription(sub["id"]))
    assert not sync_redis.sismember(keys.alert_subscriptions(), sub["id"])
    assert [s["id"] for s in client.get(PATH).json()["subscriptions"]] == [second["id"]]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"url": "ftp://example.com/hook"}, "scheme 'ftp' is not allowed"),
        ({"url": "javascript:alert(1)"}, "scheme 'javascript' is not allowed"),
        ({"url": "example.com/hook"}, "scheme '(none)' is not allowed"),
        ({"url": "https:///nohost"}, "no host"),
        ({"url": "https://user:pw@example.com/hook"}, "credentials in the URL"),  # pragma: allowlist secret
        ({"url": "https://example.com:99999/hook"}, "not a URL"),
        ({"url": "https://example.com/a b"}, "whitespace"),
        ({"url": HOOK, "kinds": []}, "at least 1 item"),
        ({"url": HOOK, "kinds": ["price_crash"]}, "sentiment_shift"),
        ({"url": HOOK, "coin": "Bitcoin!"}, "pattern"),
        ({"url": HOOK, "threshold": -1}, "greater than or equal to 0"),
        ({"kinds": ["model_drift"]}, "Field required"),
    ],
)
def test_invalid_subscriptions_are_422_with_a_reason(
    client: TestClient, body: dict[str, object], reason: str
) -> None:
    r = client.post(PATH, json=body)
    assert r.status_code == 422, r.text
    assert reason in r.text
    assert client.get(PATH).json()["count"] == 0


def test_webhook_targets_on_link_local_or_refused_networks_are_422(redis_settings: Settings) -> None:
    with TestClient(create_app(redis_settings, runtime=FakeRuntime())) as client:
        r = client.post(PATH, json={"url": "http://169.254.169.254/latest/meta-data/"})
        assert r.status_code == 422 and "link-local" in r.json()["detail"], r.text
        assert client.post(PATH, json={"url": "http://127.0.0.1:9/hook"}).status_code == 201
    strict = redis_settings.model_copy(update={"alerting": AlertingSettings(allow_private_targets=False)})
    with TestClient(create_app(strict, runtime=FakeRuntime())) as client:
        r = client.post(PATH, json={"url": "http://localhost:5000/api/2.0/mlflow/experiments/create"})
        assert r.status_code == 422 and "ALLOW_PRIVATE_TARGETS" in r.json()["detail"], r.text
        assert client.post(PATH, json={"url": HOOK}).status_code == 201


def test_unknown_id_is_404_and_malformed_is_422(client: TestClient) -> None:
    assert client.delete(f"{PATH}/sub_0123456789abcdef").status_code == 404
    assert client.delete(f"{PATH}/not-an-id").status_code == 422
    # A method no route of the path takes: 405 naming every method the path has.
    assert client.put(PATH).headers["Allow"] == "GET, POST"
    assert client.get(f"{PATH}/sub_0123456789abcdef").headers["Allow"] == "DELETE"


def test_subscriptions_per_owner_are_capped(redis_settings: Settings) -> None:
    settings = redis_settings.model_copy(update={"alerting": AlertingSettings(max_subscriptions_per_key=2)})
    with TestClient(create_app(settings, runtime=FakeRuntime())) as client:
        assert client.post(PATH, json={"url": HOOK}).status_code == 201
        assert client.post(PATH, json={"url": HOOK}).status_code == 201
        r = client.post(PATH, json={"url": HOOK})
        assert r.status_code == 409
        assert "maximum of 2" in r.json()["detail"]
        assert client.get(PATH).json()["count"] == 2


def test_auth_on_needs_the_alerts_scope_and_keeps_owners_apart(
    redis_settings: Settings, sync_redis: redis.Redis
) -> None:
    prefix = redis_settings.redis.key_prefix
    settings = make_settings(redis_settings, prefix=prefix, auth_enabled=True, key_cache_s=0)
    reader, _ = create_api_key(sync_redis, prefix, "reader")
    alice, _ = create_api_key(sync_redis, prefix, "alice", scopes=frozenset({Scope.ALERTS}))
    bob, _ = create_api_key(sync_redis, prefix, "bob", scopes=frozenset({Scope.ALERTS}))
    with TestClient(create_app(settings, runtime=FakeRuntime())) as client:
        assert client.get(PATH).status_code == 401
        r = client.post(PATH, json={"url": HOOK}, headers={"X-API-Key": reader})
        assert r.status_code == 403 and "'alerts' scope" in r.json()["detail"]
        sub = client.post(PATH, json={"url": HOOK}, headers={"X-API-Key": alice}).json()["subscription"]
        assert client.get(PATH, headers={"X-API-Key": bob}).json()["count"] == 0
        assert client.delete(f"{PATH}/{sub['id']}", headers={"X-API-Key": bob}).status_code == 404
        assert client.get(PATH, headers={"X-API-Key": alice}).json()["count"] == 1
        assert client.delete(f"{PATH}/{sub['id']}", headers={"X-API-Key": alice}).status_code == 204


@pytest.fixture
def redis_down_client() -> Iterator[TestClient]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = load_settings(
        redis={"url": f"redis://127.0.0.1:{port}/0"}, api={"anonymous_rate_limit_per_minute": 0}
    )
    with TestClient(create_app(settings, runtime=FakeRuntime())) as client:
        yield client


@pytest.mark.unit
def test_redis_away_is_503_with_retry_after(redis_down_client: TestClient) -> None:
    for method, path, body in (
        ("POST", PATH, {"url": HOOK}),
        ("GET", PATH, None),
        ("DELETE", f"{PATH}/sub_0123456789abcdef", None),
    ):
        r = redis_down_client.request(method, path, json=body)
        assert r.status_code == 503, (method, r.text)
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["type"].endswith("/redis-unavailable")


def test_the_readme_subscription_example_is_accepted(client: TestClient) -> None:
    """README: ``curl -X POST 127.0.0.1:8000/v1/alerts/subscriptions ... -d '{...}'``."""
    import json
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    example = r"POST 127\.0\.0\.1:8000(/v1/alerts/subscriptions) .*?\n\s*-d '(\{.*?\})'"
    match = re.search(example, readme, re.S)
    assert match, "the README shows how to subscribe"
    path, body = match.group(1), json.loads(match.group(2))
    r = client.post(path, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["subscription"]["coin"] == body["coin"] and r.json()["secret"]
