"""The API follows ``champion`` while it serves: no failed request across a swap.

Real uvicorn, real MLflow (a registered model of its own), the real tiny model in two
versions; clients post /v1/score continuously while ``champion`` moves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from core.settings import Settings
from model_export import registry
from tests.api.conftest import LiveServer
from tests.model_export.test_registry import drop_registered_model, register_version, registry_settings

pytestmark = pytest.mark.integration

CLIENTS = 3


@pytest.fixture
def settings(isolated_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    base = registry_settings(isolated_settings, tmp_path / "cache")
    s = registry_settings(
        isolated_settings,
        tmp_path / "cache",
        mlflow=base.mlflow.model_dump(),
        model={**base.model.model_dump(), "uri": f"models:/{base.mlflow.registered_model}@champion"},
        api={**base.api.model_dump(), "model_poll_s": 0.3, "anonymous_rate_limit_per_minute": 0},
    )
    yield s
    drop_registered_model(s)


def test_champion_swaps_under_load_without_a_failed_request(settings: Settings, tiny_model_dir: Path) -> None:
    name = settings.mlflow.registered_model
    v1 = register_version(settings, tiny_model_dir, f1=0.70)
    v2 = register_version(settings, tiny_model_dir, f1=0.80)
    old, new = f"{name}/{v1.version}", f"{name}/{v2.version}"
    app = create_app(settings)
    seen: list[list[str]] = [[] for _ in range(CLIENTS)]
    failures: list[str] = []
    stop = threading.Event()

    def client(index: int, url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                try:
                    r = http.post("/v1/score", json={"texts": ["bitcoin to the moon", "eth dumps hard"]})
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code != 200 or len(r.json()["results"]) != 2:
                    failures.append(f"{r.status_code}: {r.text[:300]}")
                    continue
                seen[index].append(r.json()["model_version"])

    with LiveServer(app) as server:
        assert app.state.cp.model.version == old
        threads = [threading.Thread(target=client, args=(i, server.url)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 60
            while sum(len(s) for s in seen) < 10 and time.monotonic() < deadline and not failures:
                time.sleep(0.1)
            assert registry.promote(v2.version, settings).allowed
            while not any(new in s for s in seen) and time.monotonic() < deadline + 60 and not failures:
                time.sleep(0.1)
            time.sleep(1.0)  # keep serving on the new model for a moment
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert app.state.cp.model.swaps == 1 and app.state.cp.model.version == new

    assert failures == [], failures[:5]
    everything = [v for s in seen for v in s]
    assert set(everything) == {old, new}, "served by the old model, then by the new one"
    for versions in seen:  # requests of one client are sequential: never back to the old model
        if new in versions:
            first_new = versions.index(new)
            assert old not in versions[first_new:]
