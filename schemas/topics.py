"""The one topic catalog: every Kafka topic CryptoPulse owns, with its contract.

Topics are created from this catalog idempotently (``cryptopulse topics --create``
and ``cryptopulse up``); nothing else creates topics by hand. Partition counts
default to the settings' ``kafka.default_partitions`` (3 on a 2-core machine) and
scale on a cluster by changing that one value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from core.settings import Settings
from schemas.events import (
    Alert,
    CleanPost,
    DeadLetter,
    Event,
    Feedback,
    ModelEvent,
    NewsArticle,
    PriceTick,
    RedditComment,
    RedditPost,
    ScoredPost,
    ShadowVerdict,
    TrendWindow,
    ValidationError,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class TopicKey(StrEnum):
    """What the record key holds; it decides partitioning and ordering."""

    SOURCE_ID = "source_id"
    COIN = "coin"
    COIN_WINDOW = "coin:window:source"
    MODEL = "model"


@dataclass(frozen=True)
class TopicSpec:
    """Contract of one topic: name suffix, key, value schema(s), retention, cleanup."""

    suffix: str
    description: str
    key: TopicKey
    value_schemas: tuple[type[Event], ...]
    retention_ms: int
    cleanup_policy: str = "delete"
    partitions: int | None = None  # None: settings.kafka.default_partitions
    extra_config: dict[str, str] = field(default_factory=dict)

    def name(self, settings: Settings) -> str:
        return f"{settings.kafka.topic_prefix}.{self.suffix}"

    def partition_count(self, settings: Settings) -> int:
        return self.partitions or settings.kafka.default_partitions

    def key_of(self, record: Event) -> str:
        """The record key this topic's contract asks for (partitioning, ordering, compaction)."""
        if self.key is TopicKey.SOURCE_ID:
            return record.source_id
        if self.key is TopicKey.MODEL:
            return str(getattr(record, "model", ""))
        coin = getattr(record, "coin", None)
        if self.key is TopicKey.COIN:
            return str(coin or "")
        window = getattr(record, "window", None)
        size = getattr(window, "value", window)
        return f"{coin}:{size}:{getattr(record, 'source', 'all')}"

    def decode(self, payload: bytes | str) -> Event:
        """The record as one of this topic's value schemas; ``ValueError`` saying why when none fits."""
        problems = []
        for model in self.value_schemas:
            try:
                return model.model_validate_json(payload)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"]) or "record"
                problems.append(f"{model.record_type}: {where}: {first['msg']}")
        raise ValueError(f"not a {self.suffix} record ({'; '.join(problems)})")

    def config(self) -> dict[str, str]:
        config = {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "compression.type": "producer",
        }
        config.update(self.extra_config)
        return config


RAW_REDDIT = TopicSpec(
    "raw.reddit",
    "Reddit posts and comments as fetched (or replayed)",
    TopicKey.SOURCE_ID,
    (RedditPost, RedditComment),
    retention_ms=7 * DAY_MS,
)
RAW_NEWS = TopicSpec(
    "raw.news",
    "News articles from RSS/Atom feeds and NewsAPI (or replayed)",
    TopicKey.SOURCE_ID,
    (NewsArticle,),
    retention_ms=7 * DAY_MS,
)
RAW_PRICES = TopicSpec(
    "raw.prices",
    "Price ticks per coin from CoinGecko (or the replay random walk)",
    TopicKey.COIN,
    (PriceTick,),
    retention_ms=7 * DAY_MS,
)
CLEAN_POSTS = TopicSpec(
    "clean.posts",
    "Validated, cleaned, English texts with coin tags",
    TopicKey.SOURCE_ID,
    (CleanPost,),
    retention_ms=3 * DAY_MS,
)
SCORED_POSTS = TopicSpec(
    "scored.posts",
    "Clean posts with sentiment label, score, probabilities and model version",
    TopicKey.SOURCE_ID,
    (ScoredPost,),
    retention_ms=30 * DAY_MS,
)
TRENDS = TopicSpec(
    "trends",
    "Per-coin trend windows as the streaming job updates them; keyed by coin:window:source, "
    "compacted so each series' latest window survives",
    TopicKey.COIN_WINDOW,
    (TrendWindow,),
    retention_ms=30 * DAY_MS,
    cleanup_policy="compact,delete",
)
ALERTS = TopicSpec(
    "alerts",
    "Sentiment shifts, volume spikes, drift and data-quality alerts",
    TopicKey.COIN,
    (Alert,),
    retention_ms=30 * DAY_MS,
    partitions=1,
)
DEAD_LETTER = TopicSpec(
    "deadletter",
    "Records any component rejected, with the original payload and the reason",
    TopicKey.SOURCE_ID,
    (DeadLetter,),
    retention_ms=30 * DAY_MS,
    partitions=1,
)
FEEDBACK = TopicSpec(
    "feedback",
    "People's labels for scored posts; compacted by source id, so the last answer for a post wins",
    TopicKey.SOURCE_ID,
    (Feedback,),
    retention_ms=-1,
    cleanup_policy="compact",
    extra_config={"min.compaction.lag.ms": str(HOUR_MS)},
)
SHADOW_SCORED = TopicSpec(
    "scored.shadow",
    "The challenger's verdicts on live posts beside the champion's, for the promotion gate",
    TopicKey.SOURCE_ID,
    (ShadowVerdict,),
    retention_ms=7 * DAY_MS,
)
MODEL_EVENTS = TopicSpec(
    "model.events",
    "Every registry move (registered, promoted, rolled back), in order",
    TopicKey.MODEL,
    (ModelEvent,),
    retention_ms=365 * DAY_MS,
    partitions=1,
)

CATALOG: tuple[TopicSpec, ...] = (
    RAW_REDDIT,
    RAW_NEWS,
    RAW_PRICES,
    CLEAN_POSTS,
    SCORED_POSTS,
    TRENDS,
    ALERTS,
    DEAD_LETTER,
    FEEDBACK,
    SHADOW_SCORED,
    MODEL_EVENTS,
)


def topic_names(settings: Settings) -> dict[str, str]:
    """Suffix -> full topic name, for every catalog topic."""
    return {spec.suffix: spec.name(settings) for spec in CATALOG}
