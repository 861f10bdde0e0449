"""What the app holds for its lifetime: settings, Redis, the scoring model (following ``champion``)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import structlog

from api.security import KeyVerifier, RateLimiter
from api.store import ViewStore
from core.settings import Settings
from scoring.holder import ModelHolder

log = structlog.get_logger(__name__)


REGISTRY_CLIENT_POLICY = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
"""MLflow's client defaults retry a refused connection for about four minutes. A server
answers 503 and polls again instead: an unreachable registry must not hold a request
thread, the alias follower or the shutdown for minutes. Explicit environment values win."""


def bound_registry_calls() -> None:
    """Apply :data:`REGISTRY_CLIENT_POLICY` to this process (MLflow reads it at each call)."""
    for name, value in REGISTRY_CLIENT_POLICY.items():
        os.environ.setdefault(name, value)


_REGISTRY_CLIENT_READY = threading.Event()
_REGISTRY_CLIENT_LOCK = threading.Lock()
_registry_client_started = False


def warm_registry_client() -> threading.Event:
    """Import MLflow's client in a daemon thread, once per process; the event is set when done.

    The import takes seconds of CPU (tens on a loaded machine): the first /v1/models request
    waits for it outside the registry's deadline, and as a daemon thread it never holds up
    a shutdown (the default executor's threads are waited for). A server that loaded its
    model from the registry has imported it already.
    """
    global _registry_client_started
    with _REGISTRY_CLIENT_LOCK:
        if not _registry_client_started:
            _registry_client_started = True

            def run() -> None:
                try:
                    importlib.import_module("mlflow.client")
                except Exception as exc:  # the registry routes then answer 503 with the reason
                    log.error("MLflow client cannot be imported", error=str(exc))
                finally:
                    _REGISTRY_CLIENT_READY.set()

            threading.Thread(target=run, name="mlflow-import", daemon=True).start()
    return _REGISTRY_CLIENT_READY


async def load_model_once(holder: ModelHolder) -> None:
    """Load at start-up; a failure is kept in ``holder.error`` (/v1/score then answers 503), never raised.

    :func:`follow_model` then keeps the model current (and retries a failed start-up load).
    """
    try:
        await holder.load()
    except Exception:  # ModelLoadError, ImportError, MLflow/network errors
        log.warning("model not loaded; /v1/score will answer 503", uri=holder.uri, error=holder.error)


async def follow_model(holder: ModelHolder, interval_s: float) -> None:
    """Follow the registry alias forever: every ``interval_s`` swap in the version it points to now.

    Like the stream worker, so a ``cryptopulse model promote`` or ``rollback`` reaches the
    API without a restart. Requests take ``holder.runtime`` once, so a request in flight
    finishes on the model it started with; only the next one sees the new model.
    """
    while True:
        await asyncio.sleep(interval_s)
        try:
            await holder.maybe_swap()
        except Exception as exc:  # never let the follower die: the next poll tries again
            log.error("model alias poll failed", uri=holder.uri, error=str(exc))


def start_model_follower(holder: ModelHolder, settings: Settings) -> asyncio.Task[None]:
    return asyncio.create_task(follow_model(holder, settings.api.model_poll_s), name="model-follower")


async def stop_model_follower(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@dataclass
class AppState:
    settings: Settings
    redis: Any
    store: ViewStore
    verifier: KeyVerifier
    limiter: RateLimiter
    model: ModelHolder
    extras: dict[str, Any] = field(default_factory=dict)
