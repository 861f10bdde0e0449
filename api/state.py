"""What the app holds for its lifetime: settings, Redis, the scoring runtime."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog

from api.security import KeyVerifier, RateLimiter
from api.store import ViewStore
from cryptopulse.settings import Settings

log = structlog.get_logger(__name__)


@dataclass
class ModelHolder:
    """The shared scoring runtime, or why it could not be loaded (then /v1/score answers 503)."""

    uri: str
    runtime: Any = None
    error: str | None = "not loaded yet"

    @property
    def loaded(self) -> bool:
        return self.runtime is not None

    @property
    def version(self) -> str | None:
        return str(self.runtime.model_version) if self.runtime is not None else None

    async def load(self, settings: Settings) -> None:
        """Load once at start-up in a thread; any failure is recorded, never raised."""
        try:
            from scoring.runtime import SentimentRuntime

            self.runtime = await asyncio.to_thread(SentimentRuntime.load, self.uri, settings)
            self.error = None
            log.info("model loaded", uri=self.uri, version=self.version)
        except Exception as exc:  # ModelLoadError, ImportError, MLflow/network errors
            self.runtime = None
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("model not loaded; /v1/score will answer 503", uri=self.uri, error=self.error)


@dataclass
class AppState:
    settings: Settings
    redis: Any
    store: ViewStore
    verifier: KeyVerifier
    limiter: RateLimiter
    model: ModelHolder
    extras: dict[str, Any] = field(default_factory=dict)
