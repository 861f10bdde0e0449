"""POST /v1/feedback: a person confirms or corrects the label of a live post.

The answer travels as a ``Feedback`` record on the compacted feedback topic, keyed by the
post's source id, so the last answer for a post wins; ``model_export.feedback`` reads it
back as a versioned dataset that joins the next training run. With auth on, the caller's
key needs the ``label`` scope: these labels change what the next model learns.

Idempotent per (source id, key): the key's last answer for each post is kept in Redis,
and the same answer again returns the record already sent instead of producing another.
After a record is acknowledged the post leaves the review queue (``review_done()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Literal

import structlog
from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI, Response
from pydantic import BaseModel, Field, ValidationError

from api.deps import CallerDep, StateDep, require_scope
from api.openapi import AUTHED, errors
from api.problems import ProblemError
from api.routes.review import find_post
from api.scopes import Scope
from api.state import AppState
from core.async_kafka import TopicTrackingProducer
from schemas.events import Feedback, SentimentLabel, utc_now
from schemas.topics import FEEDBACK

log = structlog.get_logger(__name__)

PRODUCER = "feedback_producer"
"""``AppState.extras`` slot of the lazily started producer (most API processes never need one)."""
PRODUCER_LOCK = "feedback_producer_lock"
SEND_TIMEOUT_S = 15.0
KAFKA_RETRY_AFTER_S = 10


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Stop the producer (flushing what it holds) when the app stops."""
    yield
    state: AppState | None = getattr(app.state, "cp", None)
    producer = state.extras.pop(PRODUCER, None) if state is not None else None
    if producer is not None:
        await producer.stop()


router = APIRouter(tags=["review"], lifespan=lifespan)


class FeedbackRequest(BaseModel):
    """A person's label for one post the API has seen."""

    source_id: str = Field(min_length=1, max_length=256, examples=["t3_1abcde"])
    label: SentimentLabel = Field(description="negative, neutral or positive")
    note: str | None = Field(default=None, max_length=500, description="why, in a few words")


class FeedbackResponse(BaseModel):
    status: Literal["accepted", "unchanged"] = Field(
        description="accepted: sent to the feedback topic; unchanged: this key gave the same answer before"
    )
    feedback: Feedback


def _kafka_unavailable(reason: str) -> ProblemError:
    return ProblemError(
        503,
        "Kafka unavailable",
        f"feedback not recorded: {reason}; send it again later",
        slug="kafka-unavailable",
        headers={"Retry-After": str(KAFKA_RETRY_AFTER_S)},
    )


async def _producer(state: AppState) -> Any:
    """The app's producer, started on first use; a failed start leaves none behind."""
    producer = state.extras.get(PRODUCER)
    if producer is not None:
        return producer
    lock: asyncio.Lock = state.extras.setdefault(PRODUCER_LOCK, asyncio.Lock())
    async with lock:
        producer = state.extras.get(PRODUCER)
        if producer is not None:
            return producer
        kafka = state.settings.kafka
        producer = TopicTrackingProducer(
            bootstrap_servers=kafka.bootstrap,
            client_id="cryptopulse-api-feedback",
            enable_idempotence=True,
            acks="all",
            compression_type=None if kafka.compression_type == "none" else kafka.compression_type,
            request_timeout_ms=int(SEND_TIMEOUT_S * 1000),
        )
        try:
            await asyncio.wait_for(producer.start(), SEND_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError) as exc:
            await producer.stop()
            log.warning("feedback producer did not start", bootstrap=kafka.bootstrap, error=str(exc))
            raise _kafka_unavailable(f"no broker at {kafka.bootstrap} ({type(exc).__name__})") from exc
        state.extras[PRODUCER] = producer
        return producer


async def _send(state: AppState, record: Feedback) -> None:
    producer = await _producer(state)
    topic = FEEDBACK.name(state.settings)
    try:
        await asyncio.wait_for(
            producer.send_and_wait(topic, value=record.to_json(), key=record.source_id.encode()),
            SEND_TIMEOUT_S,
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("feedback not delivered", topic=topic, source_id=record.source_id, error=str(exc))
        raise _kafka_unavailable(f"{topic} did not acknowledge ({type(exc).__name__})") from exc


def _previous(raw: bytes | str | None) -> Feedback | None:
    if raw is None:
        return None
    try:
        return Feedback.model_validate_json(raw)
    except ValidationError:
        return None  # a corrupt marker only costs one more record


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    status_code=202,
    summary="Confirm or correct the label of a live post",
    dependencies=[require_scope(Scope.LABEL)],
    responses={
        200: {"model": FeedbackResponse, "description": "the same answer as before; nothing sent"},
        **errors(*AUTHED, 403, 404, 410, 422, 503),
    },
)
async def give_feedback(
    body: FeedbackRequest, state: StateDep, caller: CallerDep, response: Response
) -> FeedbackResponse:
    keys = state.store.keys
    candidate = await find_post(state.redis, keys, body.source_id)
    if candidate is None:
        raise ProblemError(
            404,
            "Unknown post",
            f"no scored post {body.source_id!r} in the review queue or the latest posts",
            slug="unknown-post",
        )
    post = candidate.post
    max_age = timedelta(days=state.settings.learning.feedback_max_age_days)
    if utc_now() - post.event_time > max_age:
        raise ProblemError(
            410,
            "Post too old",
            f"post {body.source_id!r} is from {post.event_time.isoformat()}, older than the "
            f"{max_age.days}-day feedback retention (learning.feedback_max_age_days)",
            slug="post-too-old",
        )
    annotator = caller.key_id if state.settings.api.auth_enabled else "anonymous"
    answers = keys.review_answers(body.source_id)
    previous = _previous(await state.redis.hget(answers, annotator))
    if previous is not None and (previous.label, previous.note) == (body.label, body.note):
        response.status_code = 200
        return FeedbackResponse(status="unchanged", feedback=previous)

    record = Feedback(
        source_id=post.source_id,
        event_time=utc_now(),
        label=body.label,
        text=post.text,
        annotator=annotator,
        model_label=post.label,
        model_version=post.model_version,
        coins=post.coins,
        source=post.source,
        note=body.note,
    )
    await _send(state, record)
    # Only after the broker acknowledged it: remember the answer, take the post off the queue.
    pipe = state.redis.pipeline(transaction=True)
    pipe.hset(answers, annotator, record.model_dump_json())
    pipe.expire(answers, int(max_age.total_seconds()))
    pipe.sadd(keys.review_done(), post.source_id)
    pipe.zrem(keys.review_queue(), post.source_id)
    await pipe.execute()
    log.info(
        "feedback recorded",
        source_id=post.source_id,
        label=record.label.value,
        model_label=post.label.value,
        annotator=annotator,
    )
    return FeedbackResponse(status="accepted", feedback=record)
