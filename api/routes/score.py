"""POST /v1/score: on-demand scoring through the shared runtime (scoring.runtime).

The request model is built from settings so the OpenAPI document states the real
limits (texts per request, characters per text). No ``from __future__ import
annotations`` here: FastAPI must see the locally built model class.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import Field, create_model
from starlette.concurrency import run_in_threadpool

from api.deps import StateDep
from api.metrics import SCORED_TEXTS
from api.models import ScoreItem, ScoreRequest, ScoreResponse
from api.openapi import AUTHED, errors
from api.problems import ProblemError
from core.settings import Settings


def build_router(settings: Settings) -> APIRouter:
    """The scoring router with limits from ``settings``."""
    router = APIRouter(tags=["scoring"])
    text = Annotated[str, Field(min_length=1, max_length=settings.model.max_text_chars)]
    request_model: Any = create_model(
        "ScoreRequest",
        __base__=ScoreRequest,
        texts=(
            list[text],
            Field(
                min_length=1,
                max_length=settings.api.max_score_texts,
                description=f"1 to {settings.api.max_score_texts} texts of 1 to "
                f"{settings.model.max_text_chars} characters",
            ),
        ),
    )

    async def score(state: StateDep, body: Annotated[Any, Body()]) -> ScoreResponse:
        runtime = state.model.runtime
        if runtime is None:
            raise ProblemError(
                503,
                "Model unavailable",
                f"the scoring model {state.model.uri} is not loaded: {state.model.error}",
                slug="model-unavailable",
                headers={"Retry-After": "30"},
            )
        results = await run_in_threadpool(runtime.score, list(body.texts))
        SCORED_TEXTS.inc(len(results))
        items = [
            ScoreItem(
                index=i,
                label=r.label,
                score=r.score,
                confidence=r.confidence,
                p_negative=r.p_negative,
                p_neutral=r.p_neutral,
                p_positive=r.p_positive,
                coins=list(r.coins),
                error=r.error,
            )
            for i, r in enumerate(results)
        ]
        return ScoreResponse(model_version=str(runtime.model_version), count=len(items), results=items)

    score.__annotations__["body"] = Annotated[request_model, Body()]
    router.add_api_route(
        "/score",
        score,
        methods=["POST"],
        response_model=ScoreResponse,
        summary="Score 1..N texts with the sentiment ensemble",
        responses=errors(*AUTHED, 413, 422, 503),
    )
    return router
