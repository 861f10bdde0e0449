"""POST /v1/score: on-demand scoring through the shared runtime (scoring.runtime).

The request model is built from settings so the OpenAPI document states the real
limits (texts per request, characters per text). No ``from __future__ import
annotations`` here: FastAPI must see the locally built model class.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import Field, create_model
from starlette.concurrency import run_in_threadpool

from api.deps import StateDep
from api.metrics import SCORED_TEXTS
from api.models import ExplainedSpan, ScoreItem, ScoreRequest, ScoreResponse
from api.openapi import AUTHED, errors
from api.problems import ProblemError
from core.settings import Settings
from scoring.explain import explain_text

EXPLAIN_MAX_TEXTS = 8
"""Texts per request with explain=true: each costs about two model passes per word."""


def _explanations(
    runtime: Any, texts: list[str], errors: list[str | None]
) -> list[list[ExplainedSpan] | None]:
    """Occlusion explanations of every scorable text (one batch of variants per text)."""
    out: list[list[ExplainedSpan] | None] = []
    for text, error in zip(texts, errors, strict=True):
        if error is not None:
            out.append(None)
            continue
        found = explain_text(text, runtime.ensemble_proba)
        out.append(
            [
                ExplainedSpan(text=c.text, start=c.start, end=c.end, weight=c.weight)
                for c in found.contributions
            ]
        )
    return out


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

    async def score(
        state: StateDep,
        body: Annotated[Any, Body()],
        explain: Annotated[
            bool,
            Query(
                description=f"also return the words and phrases that drove each label "
                f"(for the first {EXPLAIN_MAX_TEXTS} texts of the request)"
            ),
        ] = False,
    ) -> ScoreResponse:
        runtime = state.model.runtime
        if runtime is None:
            raise ProblemError(
                503,
                "Model unavailable",
                f"the scoring model {state.model.uri} is not loaded: {state.model.error}",
                slug="model-unavailable",
                headers={"Retry-After": "30"},
            )
        texts = list(body.texts)
        if explain and not hasattr(runtime, "ensemble_proba"):
            raise ProblemError(
                422,
                "Explanations unavailable",
                "this API's model runs out of process and cannot explain its verdicts",
                slug="explain-unavailable",
            )
        results = await run_in_threadpool(runtime.score, texts)
        explanations: list[list[ExplainedSpan] | None] = [None] * len(results)
        explained = None
        if explain:
            # Each explanation costs about two model passes per word: the first texts only.
            head = texts[:EXPLAIN_MAX_TEXTS]
            errors = [r.error for r in results[: len(head)]]
            explanations[: len(head)] = await run_in_threadpool(_explanations, runtime, head, errors)
            explained = len(head)
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
                explanation=explanations[i],
            )
            for i, r in enumerate(results)
        ]
        return ScoreResponse(
            model_version=str(runtime.model_version), count=len(items), results=items, explained=explained
        )

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
