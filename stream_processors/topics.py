"""The stream worker's topics, declared on the app from the shared catalog (:mod:`schemas.topics`).

Records travel as the JSON bytes of :mod:`schemas.events` (see :mod:`.models`), so every
topic uses faust's ``raw`` key and value serializers.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from core.settings import Settings
from schemas.topics import (
    ALERTS,
    CLEAN_POSTS,
    DEAD_LETTER,
    FEEDBACK,
    RAW_NEWS,
    RAW_PRICES,
    RAW_REDDIT,
    SCORED_POSTS,
    SHADOW_SCORED,
)


@dataclass(frozen=True)
class StreamTopics:
    """One app's topics: the clean agent reads ``raw``, the score agent ``clean``, the
    shadow agent ``scored`` (writing ``shadow``), its feedback agent ``feedback`` and the
    prices agent ``prices``."""

    raw: faust.TopicT  # raw.reddit + raw.news
    clean: faust.TopicT
    scored: faust.TopicT
    dead_letter: faust.TopicT
    alerts: faust.TopicT
    sources: dict[str, str]  # raw topic name -> the source its records come from
    shadow: faust.TopicT
    feedback: faust.TopicT
    prices: faust.TopicT

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> StreamTopics:
        def topic(*names: str) -> faust.TopicT:
            return app.topic(*names, key_serializer="raw", value_serializer="raw")

        reddit, news = RAW_REDDIT.name(settings), RAW_NEWS.name(settings)
        return cls(
            raw=topic(reddit, news),
            clean=topic(CLEAN_POSTS.name(settings)),
            scored=topic(SCORED_POSTS.name(settings)),
            dead_letter=topic(DEAD_LETTER.name(settings)),
            alerts=topic(ALERTS.name(settings)),
            sources={reddit: "reddit", news: "news"},
            shadow=topic(SHADOW_SCORED.name(settings)),
            feedback=topic(FEEDBACK.name(settings)),
            prices=topic(RAW_PRICES.name(settings)),
        )

    def source_of(self, topic: str) -> str:
        """The data-quality source of a raw record read from ``topic`` (the name if unknown)."""
        return self.sources.get(topic, topic)
