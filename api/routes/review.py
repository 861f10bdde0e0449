"""/v1/review: live posts waiting for a person's label, most useful first.

The stream worker ranks candidates into ``review_queue()`` (higher priority first: low
confidence, members disagree, challenger and champion disagree, coins whose sentiment
just shifted) and keeps each post under ``review_post(source_id)``. This route only reads
them, leaving out the posts that already have feedback (``review_done()``), so two
reviewers working through the queue do not label the same post twice.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, ValidationError

from api.deps import StateDep
from api.openapi import AUTHED, errors
from schemas.events import ScoredPost, SentimentLabel, Source, UtcDatetime
from schemas.redis_keys import POSTS_LATEST_MAX, REVIEW_QUEUE_MAX, RedisKeys

router = APIRouter(tags=["review"])

CANDIDATE_EXTRAS = ("priority", "reasons", "challenger_label")
"""What a review candidate adds to the ScoredPost fields (the ``review_post`` contract)."""


class ReviewCandidate(BaseModel):
    """A scored post as the review queue keeps it."""

    post: ScoredPost
    priority: float = 0.0
    reasons: list[str] = Field(default_factory=list)
    challenger_label: SentimentLabel | None = None


def parse_candidate(raw: bytes | str | None) -> ReviewCandidate | None:
    """A ``review_post`` value; None when absent or corrupt (skipped, never a 500)."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            return None
        extras = {k: data.pop(k) for k in CANDIDATE_EXTRAS if k in data}
        return ReviewCandidate(post=ScoredPost.model_validate(data), **extras)
    except (ValueError, ValidationError):
        return None


async def find_post(redis: Any, keys: RedisKeys, source_id: str) -> ReviewCandidate | None:
    """The post a person labels: its review candidate, else the same post among the
    latest scored posts (a bounded list), else None."""
    candidate = parse_candidate(await redis.get(keys.review_post(source_id)))
    if candidate is not None:
        return candidate
    for raw in await redis.lrange(keys.posts_latest(), 0, POSTS_LATEST_MAX - 1):
        # Cheap pre-check before parsing: the id must appear in the JSON text.
        text = raw.decode() if isinstance(raw, bytes) else raw
        if f'"{source_id}"' not in text:
            continue
        try:
            post = ScoredPost.model_validate_json(text)
        except ValidationError:
            continue
        if post.source_id == source_id:
            return ReviewCandidate(post=post)
    return None


class ReviewItem(BaseModel):
    """One post to confirm or correct."""

    source_id: str
    text: str
    label: SentimentLabel = Field(description="the serving model's label")
    confidence: float
    score: float
    priority: float = Field(description="higher is more useful to label")
    reasons: list[str] = Field(
        description="why it is here: low_confidence, members_disagree, challenger_disagrees, coin_shift",
        examples=[["low_confidence", "challenger_disagrees"]],
    )
    challenger_label: SentimentLabel | None = Field(description="the shadow challenger's label, if any")
    coins: list[str]
    source: Source
    channel: str | None = None
    url: str | None = None
    model_version: str
    event_time: UtcDatetime


class ReviewResponse(BaseModel):
    count: int
    items: list[ReviewItem]


def review_item(candidate: ReviewCandidate) -> ReviewItem:
    p = candidate.post
    return ReviewItem(
        source_id=p.source_id,
        text=p.text,
        label=p.label,
        confidence=p.confidence,
        score=p.score,
        priority=candidate.priority,
        reasons=candidate.reasons,
        challenger_label=candidate.challenger_label,
        coins=p.coins,
        source=p.source,
        channel=p.channel,
        url=p.url,
        model_version=p.model_version,
        event_time=p.event_time,
    )


@router.get(
    "/review",
    response_model=ReviewResponse,
    summary="Posts waiting for a human label, most useful first",
    responses=errors(*AUTHED, 422),
)
async def review_queue(state: StateDep, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> ReviewResponse:
    """Reads the queue page by page, skipping posts that already have feedback and
    candidates whose post has expired, until ``limit`` items are found."""
    keys = state.store.keys
    redis = state.redis
    items: list[ReviewItem] = []
    page = max(2 * limit, 50)
    start = 0
    while len(items) < limit and start < REVIEW_QUEUE_MAX:
        rows = await redis.zrevrange(keys.review_queue(), start, start + page - 1, withscores=True)
        if not rows:
            break
        start += page
        ids = [m.decode() if isinstance(m, bytes) else m for m, _ in rows]
        priority = {sid: float(score) for sid, (_, score) in zip(ids, rows, strict=True)}
        done = await redis.smismember(keys.review_done(), ids)
        todo = [sid for sid, is_done in zip(ids, done, strict=True) if not is_done]
        if not todo:
            continue
        raws = await redis.mget([keys.review_post(sid) for sid in todo])
        for sid, raw in zip(todo, raws, strict=True):
            candidate = parse_candidate(raw)
            if candidate is not None and candidate.post.source_id == sid:
                # The queue's score is the order shown; the stored priority may lag it.
                items.append(review_item(candidate.model_copy(update={"priority": priority[sid]})))
                if len(items) == limit:
                    break
    return ReviewResponse(count=len(items), items=items)
