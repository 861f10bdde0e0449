"""The stream worker's topics, declared on the app from the shared catalog (:mod:`schemas.topics`).

Records travel as the JSON bytes of :mod:`schemas.events` (see :mod:`.models`), so every
topic uses faust's ``raw`` key and value serializers. One topic is the worker group's own,
not the catalog's: ``{group id}-counts``, the repartition of scored posts by coin that the
count agent reads (created by faust like the tables' changelogs, with their partition count,
so the counters are co-partitioned with it; see :mod:`.agents.counts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

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

COUNTS_RETENTION = timedelta(days=1)
"""The counts topic feeds windows of at most 5 minutes (kept 10 windows); a day is ample."""


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
    counts: faust.TopicT  # internal: one record per scored post and coin, keyed by coin

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
            counts=app.topic(
                f"{app.conf.id}-counts",
                key_serializer="raw",
                value_serializer="raw",
                internal=True,  # faust creates it at start-up, like a changelog
                partitions=app.conf.topic_partitions,  # the counter tables' changelogs have as many
                replicas=settings.kafka.replication_factor,
                retention=COUNTS_RETENTION,
                deleting=True,
            ),
        )

    def source_of(self, topic: str) -> str:
        """The data-quality source of a raw record read from ``topic`` (the name if unknown)."""
        return self.sources.get(topic, topic)
