"""/v1/admin: the Kafka view (topics, partitions, offsets, lag, latest messages).

The messages are raw texts with author names and dead letters with their original
payloads, so with auth on these routes need a key with the ``admin`` scope.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from api import kafka_view
from api.deps import StateDep, require_scope
from api.models import ConsumerGroupsResponse, TopicMessagesResponse, TopicsResponse
from api.openapi import AUTHED, errors
from api.problems import ProblemError
from api.scopes import Scope

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[require_scope(Scope.ADMIN)])
T = TypeVar("T")


def _unavailable(exc: Exception) -> ProblemError:
    return ProblemError(
        503, "Kafka unavailable", str(exc), slug="kafka-unavailable", headers={"Retry-After": "5"}
    )


async def _from_kafka(call: Callable[..., T], *args: Any) -> T:
    """Run a blocking Kafka admin read off the event loop; an unreachable broker is a 503."""
    try:
        return await run_in_threadpool(call, *args)
    except kafka_view.KafkaUnavailable as exc:
        raise _unavailable(exc) from exc


@router.get(
    "/topics",
    response_model=TopicsResponse,
    summary="Topics with partitions and offsets",
    responses=errors(*AUTHED, 403, 503),
)
async def topics(state: StateDep) -> TopicsResponse:
    return await _from_kafka(kafka_view.list_topics, state.settings)


@router.get(
    "/consumer-groups",
    response_model=ConsumerGroupsResponse,
    summary="Consumer groups with lag",
    responses=errors(*AUTHED, 403, 503),
)
async def consumer_groups(state: StateDep) -> ConsumerGroupsResponse:
    return await _from_kafka(kafka_view.consumer_groups, state.settings)


@router.get(
    "/topics/{topic}/messages",
    response_model=TopicMessagesResponse,
    summary="Latest messages of a topic",
    responses=errors(*AUTHED, 403, 404, 422, 503),
)
async def topic_messages(
    state: StateDep,
    topic: Annotated[str, Path(pattern=r"^[a-zA-Z0-9._-]{1,249}$", examples=["cryptopulse.posts.scored"])],
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> TopicMessagesResponse:
    try:
        return await _from_kafka(kafka_view.latest_messages, state.settings, topic, limit)
    except kafka_view.UnknownTopic as exc:
        raise ProblemError(
            404, "Unknown topic", f"topic {topic!r} does not exist", slug="unknown-topic"
        ) from exc
