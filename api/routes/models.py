"""/v1/models: the registered model versions and the model events (promotions, rollbacks).

Both read outside Redis (the MLflow registry, the ``model.events`` topic), in a thread
and under a deadline: a registry or broker that does not answer is a 503 with
Retry-After, never a hung request or a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import StateDep
from api.openapi import AUTHED, errors
from api.problems import ProblemError
from api.state import warm_registry_client
from core.redact import mask_url_credentials
from model_export.registry import list_versions, recent_model_events
from schemas.events import ModelEvent

router = APIRouter(prefix="/models", tags=["scoring"])
T = TypeVar("T")

REGISTRY_DEADLINE_S = 10.0
"""MLflow's client retries a refused connection for minutes; the API answers 503 long before."""
EVENTS_DEADLINE_S = 5.0
IMPORT_WAIT_S = 120.0


class ModelVersionInfo(BaseModel):
    version: str
    aliases: list[str]
    run_id: str
    metrics: dict[str, float] = Field(description="the gate's offline metrics (eval_weighted_f1, ...)")


class ModelsResponse(BaseModel):
    model: str = Field(description="registered model name")
    champion: str | None = Field(description="version the champion alias points to")
    serving: str | None = Field(description="NAME/VERSION this API process scores with now")
    count: int
    versions: list[ModelVersionInfo]


class ModelEventsResponse(BaseModel):
    count: int
    events: list[ModelEvent] = Field(description="newest first")


async def _within(
    title: str, what: str, deadline_s: float, retry_after: int, call: Callable[..., T], *args: Any
) -> T:
    """Run a blocking read in a thread; any failure or a missed deadline is a 503 naming ``what``."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(call, *args), timeout=deadline_s)
    except TimeoutError:
        detail = f"{what} did not answer within {deadline_s:.0f} s"
    except Exception as exc:  # MlflowException, connection errors, registry.EventsUnavailable
        detail = f"{what} failed: {mask_url_credentials(str(exc))[:500]}"
    raise ProblemError(
        503,
        f"{title} unavailable",
        detail,
        slug="dependency-unavailable",
        headers={"Retry-After": str(retry_after)},
    )


@router.get(
    "",
    response_model=ModelsResponse,
    summary="Registered model versions with aliases and gate metrics",
    responses=errors(*AUTHED, 503),
)
async def models(state: StateDep) -> ModelsResponse:
    settings = state.settings
    where = f"model registry at {mask_url_credentials(settings.mlflow.uri)}"
    ready = warm_registry_client()
    if not ready.is_set():  # the first import takes seconds: not the registry's deadline
        await asyncio.to_thread(ready.wait, IMPORT_WAIT_S)
    versions = await _within("Model registry", where, REGISTRY_DEADLINE_S, 30, list_versions, settings)
    infos = [
        ModelVersionInfo(version=v.version, aliases=list(v.aliases), run_id=v.run_id, metrics=v.metrics)
        for v in versions
    ]
    champion = next((v.version for v in versions if "champion" in v.aliases), None)
    return ModelsResponse(
        model=settings.mlflow.registered_model,
        champion=champion,
        serving=state.model.version,
        count=len(infos),
        versions=infos,
    )


@router.get(
    "/events",
    response_model=ModelEventsResponse,
    summary="The newest model events (registered, promoted, rolled back), newest first",
    responses=errors(*AUTHED, 422, 503),
)
async def model_events(
    state: StateDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> ModelEventsResponse:
    settings = state.settings
    where = f"Kafka at {settings.kafka.bootstrap}"
    events = await _within(
        "Kafka", where, EVENTS_DEADLINE_S + 5, 5, recent_model_events, settings, limit, EVENTS_DEADLINE_S
    )
    return ModelEventsResponse(count=len(events), events=events)
