"""What the app holds for its lifetime: settings, Redis, the scoring model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from api.security import KeyVerifier, RateLimiter
from api.store import ViewStore
from core.settings import Settings
from scoring.holder import ModelHolder

log = structlog.get_logger(__name__)


async def load_model_once(holder: ModelHolder) -> None:
    """Load at start-up; a failure is kept in ``holder.error`` (/v1/score then answers 503), never raised.

    The API does not follow the alias: it serves the version it started with.
    """
    try:
        await holder.load()
    except Exception:  # ModelLoadError, ImportError, MLflow/network errors
        log.warning("model not loaded; /v1/score will answer 503", uri=holder.uri, error=holder.error)


@dataclass
class AppState:
    settings: Settings
    redis: Any
    store: ViewStore
    verifier: KeyVerifier
    limiter: RateLimiter
    model: ModelHolder
    extras: dict[str, Any] = field(default_factory=dict)
