"""Where integration tests find Kafka and Redis: the local platform, or throw-away containers.

One setting chooses, the environment variable ``CRYPTOPULSE_TEST_BACKEND``:

- ``local`` (the default): the platform of ``cryptopulse up`` (started when it is not
  running), which concurrent runs share through throw-away topic and key prefixes;
- ``containers``: Kafka and Redis containers that testcontainers starts for this session and
  removes after it; it needs a Docker engine. MLflow stays the local one, which needs none (the
  registry tests register throw-away model names there).

docs/testing.md says more for contributors.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal, get_args

import pytest

from core.settings import Settings, get_settings
from cryptopulse.platform.manager import Platform

BACKEND_ENV = "CRYPTOPULSE_TEST_BACKEND"
Backend = Literal["local", "containers"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
# KRaft mode (no ZooKeeper container); Redis 7.0, as the local platform's Debian redis-server.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
REDIS_IMAGE = "redis:7.0"
DOCKER_PING_TIMEOUT_S = 5


class BackendUnavailable(RuntimeError):
    """The chosen backend cannot run here; the message says why and what to do instead."""


def selected_backend(environ: Mapping[str, str] = os.environ) -> Backend:
    """The backend ``CRYPTOPULSE_TEST_BACKEND`` names (``local`` when unset or empty)."""
    value = environ.get(BACKEND_ENV, "").strip().lower() or "local"
    for backend in BACKENDS:
        if value == backend:
            return backend
    raise BackendUnavailable(
        f"{BACKEND_ENV}={value!r} is not a test backend; use one of: {', '.join(BACKENDS)}"
    )


def require_docker_engine() -> None:
    """Fail at once, saying what to do, when no Docker engine answers: otherwise every test
    would wait for a container that cannot start."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_S)
        try:
            client.ping()
        finally:
            client.close()
    except (DockerException, OSError) as exc:  # requests' connection errors are OSErrors
        where = os.environ.get("DOCKER_HOST") or "the default socket /var/run/docker.sock"
        raise BackendUnavailable(
            f"{BACKEND_ENV}=containers needs a running Docker engine, and none answers at {where} "
            f"({exc}). Start one (or point DOCKER_HOST at it), or test against the local platform "
            f"with {BACKEND_ENV}=local."
        ) from exc


@contextmanager
def backend_settings(backend: Backend) -> Iterator[Settings]:
    """The settings integration tests use with ``backend``, its services running meanwhile."""
    settings = get_settings()
    if backend == "local":
        Platform(settings).up(["kafka", "redis", "mlflow"])
        yield settings
        return
    require_docker_engine()
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.redis import RedisContainer

    with (
        KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka,
        RedisContainer(REDIS_IMAGE) as redis,
        pytest.MonkeyPatch.context() as environment,
    ):
        # Through the environment, so that get_settings() and the processes tests start
        # (workers, producers, the e2e pipeline) find the containers too.
        environment.setenv("CRYPTOPULSE_KAFKA__BOOTSTRAP_SERVERS", kafka.get_bootstrap_server())
        environment.setenv(
            "CRYPTOPULSE_REDIS__URL",
            f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0",
        )
        get_settings.cache_clear()
        try:
            in_containers = get_settings()
            Platform(in_containers).up(["mlflow"])
            yield in_containers
        finally:
            get_settings.cache_clear()
