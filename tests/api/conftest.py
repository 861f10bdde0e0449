"""API test fixtures: settings with a unique Redis prefix, seeded views, app clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings, load_settings
from scoring.runtime import TextScore
from tests.api.seed import seed_views
from views import delete_prefixed_keys


def make_settings(base: Settings, prefix: str | None = None, **api: Any) -> Settings:
    """Settings like ``base`` with a unique Redis key prefix and API overrides."""
    return load_settings(
        kafka=base.kafka.model_dump(),
        redis={**base.redis.model_dump(), "key_prefix": prefix or f"test-api-{uuid.uuid4().hex[:10]}"},
        api={**base.api.model_dump(), **api},
        model=base.model.model_dump(),
        dashboard=base.dashboard.model_dump(),
    )


@pytest.fixture
def redis_settings(platform: Settings) -> Iterator[Settings]:
    """Real Redis, unique key prefix (cleaned up afterwards); no Kafka topics needed."""
    settings = make_settings(platform)
    yield settings
    delete_prefixed_keys(redis.Redis.from_url(settings.redis.dsn), settings.redis.key_prefix)


@pytest.fixture
def sync_redis(redis_settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_settings.redis.dsn)
    yield client
    client.close()


@pytest.fixture
def seeded(redis_settings: Settings, sync_redis: redis.Redis) -> dict[str, Any]:
    return seed_views(sync_redis, redis_settings.redis.key_prefix)


class FakeRuntime:
    """Stands in for scoring.runtime.SentimentRuntime where the model itself is not under test."""

    model_version = "fake/1"

    def score(self, texts: list[str]) -> list[TextScore]:
        out = []
        for text in texts:
            if not text.strip():
                out.append(TextScore(label=None, model_version=self.model_version, error="empty text"))
                continue
            positive = "bull" in text.lower() or "moon" in text.lower()
            out.append(
                TextScore(
                    label="positive" if positive else "neutral",
                    score=0.7 if positive else 0.0,
                    confidence=0.8,
                    p_negative=0.1,
                    p_neutral=0.1 if positive else 0.8,
                    p_positive=0.8 if positive else 0.1,
                    coins=("bitcoin",) if "btc" in text.lower() else (),
                    model_version=self.model_version,
                )
            )
        return out

    def ensemble_proba(self, texts: list[str]) -> np.ndarray:
        """The same verdicts as probabilities, so explanations work on the fake too."""
        rows = [
            [0.1, 0.1, 0.8] if ("bull" in t.lower() or "moon" in t.lower()) else [0.1, 0.8, 0.1]
            for t in texts
        ]
        return np.array(rows)


@pytest.fixture
def client(redis_settings: Settings) -> Iterator[TestClient]:
    """The app over real Redis, auth off, a fake scoring runtime."""
    with TestClient(create_app(redis_settings, runtime=FakeRuntime())) as c:
        yield c


class LiveServer:
    """The app under a real uvicorn server in a background thread (real HTTP, real streaming)."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_api(redis_settings: Settings, seeded: dict[str, Any]) -> Iterator[LiveServer]:
    """Seeded views served over HTTP by uvicorn (auth off, fake runtime)."""
    with LiveServer(create_app(redis_settings, runtime=FakeRuntime())) as server:
        yield server
