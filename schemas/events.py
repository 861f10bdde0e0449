"""Every record CryptoPulse puts on the wire, as pydantic v2 models.

Producers, stream processors, Spark jobs and API endpoints all import these models,
so a field means the same thing everywhere. Records travel as JSON (UTF-8). Each
record carries:

* ``schema_version``: bumped on any incompatible change; consumers reject unknown majors;
* ``source_id``: a stable id used as the idempotency key (the same real-world item
  always gets the same id, so re-producing it is detectable downstream);
* ``event_time``: when the thing happened (post created, tick observed), UTC;
* ``ingest_time``: when CryptoPulse first saw it, UTC.

Timestamps are serialized as ISO-8601 in UTC with a ``Z`` suffix.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    field_validator,
)

SCHEMA_VERSION: Literal[1] = 1


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a timezone (ISO-8601 with Z or an offset)")
    if value.tzinfo is UTC and value.microsecond % 1000 == 0:
        return value  # already normal: ``replace`` costs microseconds, four times per trend window
    # Millisecond precision, like Kafka timestamps, so JSON round trips are exact.
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


@functools.lru_cache(maxsize=1 << 15)
def iso_utc(value: datetime) -> str:
    """The wire form of every timestamp: UTC, milliseconds, ``Z``.

    Cached: a trend window carries five timestamps and a backfill writes ~10^5 windows that
    share some 10^4 distinct timestamps. Equal datetimes are the same instant, so
    a value cached for one zone is right for every other.
    """
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_require_utc),
    PlainSerializer(iso_utc, return_type=str, when_used="json"),
    Field(json_schema_extra={"format": "date-time"}),
]
"""A timezone-aware datetime normalized to UTC; naive timestamps are rejected."""

CoinId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", max_length=64, examples=["bitcoin"])]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]

# Every string on the wire has a maximum length, so no single field can make a record too
# large for the broker or a consumer's memory: texts 40k characters, ids 256, URLs 2048.
MAX_TEXT_CHARS = 40_000
MAX_ID_CHARS = 256
MAX_URL_CHARS = 2048
DEAD_LETTER_PAYLOAD_MAX_BYTES = 64 * 1024
"""How much of a refused payload a dead letter keeps. The whole record may be what broke the
component (a 2 MB message, a 200 KB nested array), and the dead letter itself must fit on its
topic; ``payload_size`` and ``payload_sha256`` still identify the original."""


def utc_now() -> datetime:
    """Now in UTC at millisecond precision (the wire precision)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def content_hash(text: str) -> str:
    """Stable hash of normalized text, for de-duplication and ids of id-less items."""
    return hashlib.sha256(" ".join(text.lower().split()).encode("utf-8")).hexdigest()


class Source(StrEnum):
    REDDIT = "reddit"
    NEWS = "news"
    REPLAY = "replay"
    PRICES = "prices"


class SentimentLabel(StrEnum):
    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"


class WindowSize(StrEnum):
    """Trend window sizes; ``1h_5m`` is a one-hour window sliding every five minutes."""

    ONE_MINUTE = "1m"
    FIVE_MINUTES = "5m"
    ONE_HOUR = "1h"
    ONE_DAY = "1d"
    ONE_HOUR_SLIDING = "1h_5m"


class Event(BaseModel):
    """Common envelope of every record on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    record_type: ClassVar[str] = "event"

    schema_version: Literal[1] = SCHEMA_VERSION
    source_id: str = Field(min_length=1, max_length=256, description="stable idempotency key")
    event_time: UtcDatetime
    ingest_time: UtcDatetime = Field(default_factory=utc_now)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_json(cls, payload: bytes | str) -> Any:
        return cls.model_validate_json(payload)


class RedditPost(Event):
    """A submission from a subreddit listing (fullname ``t3_...``)."""

    record_type: ClassVar[str] = "reddit_post"

    kind: Literal["post"] = "post"
    source_id: str = Field(pattern=r"^t3_[a-z0-9]+$", max_length=MAX_ID_CHARS, examples=["t3_1abcde"])
    subreddit: str = Field(min_length=1, max_length=64)
    title: str = Field(max_length=1000)
    selftext: str = Field(default="", max_length=MAX_TEXT_CHARS)
    author: str | None = Field(default=None, max_length=64)
    score: int = 0
    num_comments: int = Field(default=0, ge=0)
    url: str | None = Field(default=None, max_length=MAX_URL_CHARS)
    permalink: str | None = Field(default=None, max_length=MAX_URL_CHARS)


class RedditComment(Event):
    """A comment from a subreddit's comment listing (fullname ``t1_...``)."""

    record_type: ClassVar[str] = "reddit_comment"

    kind: Literal["comment"] = "comment"
    source_id: str = Field(pattern=r"^t1_[a-z0-9]+$", max_length=MAX_ID_CHARS, examples=["t1_abcdef"])
    subreddit: str = Field(min_length=1, max_length=64)
    body: str = Field(max_length=MAX_TEXT_CHARS)
    author: str | None = Field(default=None, max_length=64)
    link_id: str = Field(pattern=r"^t3_[a-z0-9]+$", max_length=MAX_ID_CHARS)
    parent_id: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    score: int = 0
    permalink: str | None = Field(default=None, max_length=MAX_URL_CHARS)


class NewsArticle(Event):
    """A news headline from an RSS/Atom feed or NewsAPI; ``source_id`` is a GUID or link hash."""

    record_type: ClassVar[str] = "news_article"

    kind: Literal["news"] = "news"
    feed: str = Field(min_length=1, max_length=MAX_URL_CHARS, description="feed URL or provider name")
    publisher: str | None = Field(default=None, max_length=256)
    title: str = Field(min_length=1, max_length=2000)
    summary: str = Field(default="", max_length=MAX_TEXT_CHARS)
    link: str | None = Field(default=None, max_length=MAX_URL_CHARS)
    author: str | None = Field(default=None, max_length=256)


class PriceTick(Event):
    """A price observation for one coin; keyed by coin id on the wire."""

    record_type: ClassVar[str] = "price_tick"

    coin: CoinId
    vs_currency: str = Field(default="usd", pattern=r"^[a-z]{3,5}$", max_length=5)
    price: float = Field(gt=0)
    market_cap: float | None = Field(default=None, ge=0)
    volume_24h: float | None = Field(default=None, ge=0)
    change_24h_pct: float | None = None
    provider: str = Field(default="coingecko", max_length=64)

    @classmethod
    def make_source_id(cls, coin: str, event_time: datetime) -> str:
        return f"{coin}:{iso_utc(event_time)}"


RawText = RedditPost | RedditComment | NewsArticle
"""Any raw text record a producer may emit."""


class QualityFlag(StrEnum):
    TRUNCATED = "truncated"
    REPEATED_TEXT = "repeated_text"
    LINK_ONLY = "link_only"
    PUMP_AND_DUMP = "pump_and_dump"
    EXCESSIVE_CAPS = "excessive_caps"
    EXCESSIVE_EMOJI = "excessive_emoji"
    PII_MASKED = "pii_masked"


class CleanPost(Event):
    """A validated, cleaned, English text with the coins it mentions."""

    record_type: ClassVar[str] = "clean_post"

    source: Source
    text: str = Field(min_length=1, max_length=1000)
    original_length: int = Field(ge=0)
    language: str = Field(default="en", pattern=r"^[a-z]{2}$", max_length=2)
    flags: list[QualityFlag] = Field(default_factory=list)
    author_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{16,64}$", max_length=64)
    coins: list[CoinId] = Field(default_factory=list)
    channel: str | None = Field(default=None, max_length=256, description="subreddit or feed")
    url: str | None = Field(default=None, max_length=MAX_URL_CHARS)
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$", max_length=64)


class ScoredPost(CleanPost):
    """A clean post with the ensemble's verdict; what dashboards and Spark consume."""

    record_type: ClassVar[str] = "scored_post"

    label: SentimentLabel
    score: float = Field(ge=-1.0, le=1.0, description="p_positive - p_negative")
    confidence: Probability
    p_negative: Probability
    p_neutral: Probability
    p_positive: Probability
    model_version: str = Field(min_length=1, max_length=128)
    scored_time: UtcDatetime = Field(default_factory=utc_now)


class TrendWindow(Event):
    """Aggregated sentiment of one coin over one event-time window."""

    record_type: ClassVar[str] = "trend_window"

    coin: CoinId
    window: WindowSize
    # "all" first: pydantic tries the union's members in order, and nearly every window the
    # views hold is "all" (a miss on the enum costs a Python exception, ~2 us a window).
    source: Literal["all"] | Source = "all"
    window_start: UtcDatetime
    window_end: UtcDatetime
    volume: int = Field(ge=0, description="mentions in the window")
    mean_score: float = Field(ge=-1.0, le=1.0)
    weighted_score: float = Field(ge=-1.0, le=1.0, description="confidence-weighted mean score")
    positive_share: Probability
    neutral_share: Probability
    negative_share: Probability
    social_dominance: Probability = Field(description="this coin's share of all mentions in the window")
    volume_zscore: float | None = None
    sentiment_zscore: float | None = Field(
        default=None, description="weighted_score against the same series' trailing windows"
    )
    sentiment_change: float | None = Field(
        default=None, ge=-2.0, le=2.0, description="weighted_score minus the trailing windows' mean"
    )
    price_open: float | None = None
    price_high: float | None = None
    price_low: float | None = None
    price_close: float | None = None
    price_return: float | None = None
    sentiment_return_corr: float | None = Field(default=None, ge=-1.0, le=1.0)
    lead_lag_windows: int | None = Field(
        default=None,
        ge=-100,
        le=100,
        description="the shift k (windows) maximising |corr(sentiment_t, return_t+k)| over the "
        "trailing windows; positive: sentiment led price; null: too little history",
    )
    lead_lag_corr: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="that correlation at lead_lag_windows"
    )

    @classmethod
    def make_source_id(cls, coin: str, window: str, source: str, start: datetime) -> str:
        return f"{coin}:{window}:{source}:{iso_utc(start)}"


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Alert(Event):
    """A notable change: sentiment swing, volume spike, model drift, data-quality breach."""

    record_type: ClassVar[str] = "alert"

    kind: Literal["sentiment_shift", "volume_spike", "model_drift", "data_quality"]
    severity: AlertSeverity
    coin: CoinId | None = None
    window: WindowSize | None = None
    message: str = Field(min_length=1, max_length=2000)
    value: float | None = None
    threshold: float | None = None


class DataQualityReport(BaseModel):
    """One source's closed data-quality window: each validation rule's failure share.

    Not a Kafka record: the stream worker writes it to Redis for the API and dashboard.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(pattern=r"^[\w.<>-]{1,128}$", examples=["reddit"])
    window_start: UtcDatetime
    window_end: UtcDatetime
    records: int = Field(ge=0, description="raw records of this source in the window")
    shares: dict[str, Probability] = Field(description="rule -> share of records failing it")
    thresholds: dict[str, Probability] = Field(description="rule -> share that may fail")
    breaches: list[str] = Field(description="rules over their threshold (windows too small are not judged)")
    judged: bool = Field(description="whether the window had enough records to be judged")
    quality_score: Probability = Field(description="share of records passing every rule")


class DeadLetter(Event):
    """A record a component could not accept, with the original bytes (capped) and the reason.

    ``source_id`` is the original record's id when it could be read, otherwise a hash
    of the payload, so re-delivered bad input dead-letters idempotently too.
    """

    record_type: ClassVar[str] = "dead_letter"

    reason: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$", max_length=64, examples=["invalid_schema"])
    detail: str = Field(max_length=4000)
    component: str = Field(min_length=1, max_length=128)
    original_topic: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    original_partition: int | None = None
    original_offset: int | None = None
    original_key: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    payload: str = Field(
        max_length=DEAD_LETTER_PAYLOAD_MAX_BYTES,
        description="the original payload's first 64 KiB, UTF-8 with replacement of undecodable bytes",
    )
    payload_size: int | None = Field(default=None, ge=0, description="bytes of the whole original payload")
    payload_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", max_length=64, description="of the whole original payload"
    )

    @field_validator("detail", mode="before")
    @classmethod
    def _clip_detail(cls, value: object) -> object:
        return value[:4000] if isinstance(value, str) else value

    @field_validator("original_key", mode="before")
    @classmethod
    def _clip_key(cls, value: object) -> object:
        """A hostile key must not stop its record from being dead-lettered."""
        return value[:MAX_ID_CHARS] if isinstance(value, str) else value

    @classmethod
    def for_payload(
        cls,
        payload: bytes | str,
        *,
        reason: str,
        detail: str,
        component: str,
        source_id: str | None = None,
        event_time: datetime | None = None,
        **origin: Any,
    ) -> DeadLetter:
        raw = payload if isinstance(payload, bytes) else payload.encode("utf-8", "replace")
        digest = hashlib.sha256(raw).hexdigest()
        return cls(
            source_id=source_id or "sha256:" + digest,
            event_time=event_time or utc_now(),
            reason=reason,
            detail=detail,
            component=component,
            payload=raw[:DEAD_LETTER_PAYLOAD_MAX_BYTES].decode("utf-8", "replace"),
            payload_size=len(raw),
            payload_sha256=digest,
            **origin,
        )


class Feedback(Event):
    """A person's label for one scored post: the human half of the learning loop.

    ``source_id`` is the post's id; the feedback topic is compacted by it, so the last
    answer for a post wins. The text travels along so the feedback dataset stands alone.
    """

    record_type: ClassVar[str] = "feedback"

    label: SentimentLabel
    text: str = Field(min_length=1, max_length=1000)
    annotator: str = Field(
        min_length=1, max_length=128, description="API key id, or 'anonymous' with auth off"
    )
    model_label: SentimentLabel | None = Field(default=None, description="the verdict the person saw")
    model_version: str | None = Field(default=None, max_length=128)
    coins: list[CoinId] = Field(default_factory=list)
    source: Source | None = None
    note: str | None = Field(default=None, max_length=500)


class ShadowVerdict(Event):
    """The challenger's verdict on a live post the champion scored, for the promotion gate."""

    record_type: ClassVar[str] = "shadow_verdict"

    champion_version: str = Field(min_length=1, max_length=128)
    champion_label: SentimentLabel
    challenger_version: str = Field(min_length=1, max_length=128)
    challenger_label: SentimentLabel
    challenger_score: float = Field(ge=-1.0, le=1.0)
    challenger_confidence: Probability
    agree: bool
    coins: list[CoinId] = Field(default_factory=list)
    source: Source | None = None


class ModelEvent(Event):
    """A move in the model registry (registered, promoted, rolled back), published for all to see.

    ``source_id`` is ``MODEL:ACTION:VERSION:TIME`` so a re-published event is recognisable.
    """

    record_type: ClassVar[str] = "model_event"

    model: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    action: Literal["registered", "promoted", "rolled_back", "alias_removed"]
    alias: str | None = Field(default=None, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    previous_version: str | None = Field(default=None, max_length=64)
    reasons: list[Annotated[str, Field(max_length=500)]] = Field(default_factory=list, max_length=50)
    actor: str = Field(
        default="cli", min_length=1, max_length=128, description="cli, orchestrator, auto-promote"
    )


WIRE_MODELS: tuple[type[Event], ...] = (
    RedditPost,
    RedditComment,
    NewsArticle,
    PriceTick,
    CleanPost,
    ScoredPost,
    TrendWindow,
    Alert,
    DeadLetter,
    Feedback,
    ShadowVerdict,
    ModelEvent,
)
"""Every model that appears on a topic; JSON Schema files are generated for each."""

MODEL_BY_RECORD_TYPE: dict[str, type[Event]] = {m.record_type: m for m in WIRE_MODELS}


_RAW_ADAPTER: TypeAdapter[RawText] = TypeAdapter(Annotated[RawText, Field(discriminator="kind")])


def parse_raw_text(payload: bytes | str) -> RawText:
    """Parse a raw text record of any kind, dispatching on its ``kind`` field."""
    return _RAW_ADAPTER.validate_json(payload)


__all__ = [
    "DEAD_LETTER_PAYLOAD_MAX_BYTES",
    "MAX_ID_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_URL_CHARS",
    "MODEL_BY_RECORD_TYPE",
    "SCHEMA_VERSION",
    "WIRE_MODELS",
    "Alert",
    "AlertSeverity",
    "CleanPost",
    "CoinId",
    "DataQualityReport",
    "DeadLetter",
    "Event",
    "Feedback",
    "ModelEvent",
    "NewsArticle",
    "PriceTick",
    "QualityFlag",
    "RawText",
    "RedditComment",
    "RedditPost",
    "ScoredPost",
    "SentimentLabel",
    "ShadowVerdict",
    "Source",
    "TrendWindow",
    "UtcDatetime",
    "ValidationError",
    "WindowSize",
    "content_hash",
    "parse_raw_text",
    "utc_now",
]


AlertKind = Literal["sentiment_shift", "volume_spike", "model_drift", "data_quality"]
"""The kinds of :class:`Alert` a subscription can ask for."""


class AlertSubscription(BaseModel):
    """One owner's standing request to receive matching alerts at a webhook.

    Not a Kafka record: the API writes it to Redis (``RedisKeys.alert_subscription``) and
    the alerting service reads it. ``secret`` signs every delivery (HMAC-SHA256); the API
    shows it once, at creation.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^sub_[0-9a-f]{16}$", examples=["sub_0123456789abcdef"])
    owner: str = Field(min_length=1, max_length=128, description="API key id, or `local` with auth off")
    coin: CoinId | None = Field(
        default=None, description="only this coin; null: every coin and coin-less alerts"
    )
    kinds: list[AlertKind] = Field(min_length=1, max_length=4)
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        description="only alerts whose |value| is at least this (alerts without a value match)",
    )
    url: str = Field(min_length=8, max_length=MAX_URL_CHARS)
    secret: str = Field(min_length=32, max_length=128)
    created: UtcDatetime = Field(default_factory=utc_now)

    def matches(self, alert: Alert) -> bool:
        """Whether ``alert`` is one this subscription asked for."""
        if alert.kind not in self.kinds:
            return False
        if self.coin is not None and alert.coin != self.coin:
            return False
        return self.threshold is None or alert.value is None or abs(alert.value) >= self.threshold
