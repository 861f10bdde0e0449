"""GET /v1/models and /v1/models/events against the real MLflow and Kafka, and with each away."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.routes import models as models_route
from core.settings import Settings, load_settings
from model_export import registry
from tests.api.conftest import FakeRuntime
from tests.model_export.test_registry import drop_registered_model, register_version, registry_settings
from tests.ports import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(isolated_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    s = registry_settings(isolated_settings, tmp_path / "cache")
    yield s
    drop_registered_model(s)


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    directory = tmp_path / "artifact" / "model"
    directory.mkdir(parents=True)
    (directory / "metadata.json").write_text(json.dumps({"model_version": "stand-in"}))
    return directory


def test_versions_and_events(settings: Settings, artifact: Path) -> None:
    with TestClient(create_app(settings, runtime=FakeRuntime())) as client:
        empty = client.get("/v1/models")
        assert empty.status_code == 200 and empty.json()["versions"] == []
        assert client.get("/v1/models/events").json() == {"count": 0, "events": []}

        v1 = register_version(settings, artifact, f1=0.70)
        v2 = register_version(settings, artifact, f1=0.80)
        assert registry.promote(v2.version, settings).allowed

        body = client.get("/v1/models").json()
        assert body["model"] == settings.mlflow.registered_model and body["serving"] == "fake/1"
        assert body["champion"] == v2.version and body["count"] == 2
        assert [(v["version"], v["aliases"]) for v in body["versions"]] == [
            (v2.version, ["champion"]),
            (v1.version, []),
        ]
        assert body["versions"][0]["metrics"]["eval_weighted_f1"] == pytest.approx(0.80)

        events = client.get("/v1/models/events", params={"limit": 3}).json()
        assert events["count"] == 3
        assert [(e["action"], e["version"]) for e in events["events"]] == [
            ("alias_removed", v2.version),
            ("promoted", v2.version),
            ("registered", v2.version),
        ]
        assert events["events"][1]["previous_version"] == v1.version and events["events"][1]["reasons"]
        assert client.get("/v1/models/events", params={"limit": 0}).status_code == 422


def test_registry_and_kafka_away_are_503(redis_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models_route, "REGISTRY_DEADLINE_S", 3.0)
    away = load_settings(
        **{
            **redis_settings.model_dump(),
            "mlflow": {"tracking_uri": f"http://127.0.0.1:{free_port()}"},
            "kafka": {"bootstrap_servers": f"127.0.0.1:{free_port()}"},
        }
    )
    with TestClient(create_app(away, runtime=FakeRuntime())) as client:
        for path in ("/v1/models", "/v1/models/events"):
            r = client.get(path)
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] and r.headers["content-type"] == "application/problem+json"
            assert "127.0.0.1:" in r.json()["detail"]
