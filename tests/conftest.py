"""Shared fixtures: the real services for integration tests.

``platform`` starts Kafka, Redis and MLflow through the same code as
``cryptopulse up`` (or reuses them when already running), or with
``CRYPTOPULSE_TEST_BACKEND=containers`` Kafka and Redis in containers (tests/backends.py),
and creates the catalog topics. Tests isolate themselves with unique topic prefixes / Redis
key prefixes (see ``isolated_settings``) rather than by restarting services.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from core.kafka import ensure_topics
from core.settings import Settings, load_settings
from schemas.topics import CATALOG
from tests.backends import BackendUnavailable, backend_settings, selected_backend
from tests.cleanup import discard_run_data


@pytest.fixture(scope="session")
def platform() -> Iterator[Settings]:
    """The settings of the services integration tests use, chosen by CRYPTOPULSE_TEST_BACKEND:
    the running local platform (started here when it is not up), or Kafka and Redis containers
    beside the local MLflow (tests/backends.py, docs/testing.md)."""
    with ExitStack() as services:
        try:
            settings = services.enter_context(backend_settings(selected_backend()))
        except BackendUnavailable as exc:
            pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
        ensure_topics(settings, CATALOG)
        yield settings


@pytest.fixture
def isolated_settings(platform: Settings) -> Iterator[Settings]:
    """Settings whose topics and Redis keys are unique to this test, with topics created;
    both are deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    settings = load_settings(
        kafka={**platform.kafka.model_dump(), "topic_prefix": f"test-{tag}"},
        redis={**platform.redis.model_dump(), "key_prefix": f"test-{tag}"},
    )
    ensure_topics(settings, CATALOG)
    yield settings
    discard_run_data(settings)


@pytest.fixture(scope="session")
def tiny_model_dir(platform: Settings) -> Path:
    """A real (tiny) ensemble artifact shared by every test that scores text."""
    from tests.tiny_model import tiny_model_dir as build

    return build(platform)
