"""Response and request bodies of the public API (the OpenAPI document is built from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import (
    Alert,
    CoinId,
    DataQualityReport,
    PriceTick,
    ScoredPost,
    TrendWindow,
    UtcDatetime,
    WindowSize,
)

_TREND_EXAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "source_id": "bitcoin:5m:all:2026-11-28T18:00:00.000Z",
    "event_time": "2026-11-28T18:05:00.000Z",
    "ingest_time": "2026-11-28T18:05:02.000Z",
    "coin": "bitcoin",
    "window": "5m",
    "source": "all",
    "window_start": "2026-11-28T18:00:00.000Z",
    "window_end": "2026-11-28T18:05:00.000Z",
    "volume": 42,
    "mean_score": 0.21,
    "weighted_score": 0.25,
    "positive_share": 0.45,
    "neutral_share": 0.35,
    "negative_share": 0.2,
    "social_dominance": 0.38,
    "volume_zscore": 1.7,
    "sentiment_zscore": 0.8,
    "sentiment_change": 0.06,
    "price_close": 91234.5,
    "price_return": 0.004,
    "sentiment_return_corr": 0.12,
    "lead_lag_windows": 2,
    "lead_lag_corr": 0.41,
}
_PRICE_EXAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "source_id": "bitcoin:2026-11-28T18:05:00.000Z",
    "event_time": "2026-11-28T18:05:00.000Z",
    "ingest_time": "2026-11-28T18:05:01.000Z",
    "coin": "bitcoin",
    "vs_currency": "usd",
    "price": 91234.5,
    "provider": "coingecko",
}


class ResponseModel(BaseModel):
    """Base of every response body: the config they all share (immutable once built)."""

    model_config = ConfigDict(frozen=True)


def with_example(example: dict[str, Any]) -> ConfigDict:
    """A response model's config: its OpenAPI example (the rest comes from :class:`ResponseModel`)."""
    return ConfigDict(json_schema_extra={"examples": [example]})


class CoinSummary(ResponseModel):
    """A tracked coin with its latest window and price (either may not exist yet)."""

    coin: CoinId
    sentiment: TrendWindow | None = Field(description="latest window of the requested size")
    price: PriceTick | None = None


class CoinsResponse(ResponseModel):
    model_config = with_example(
        {
            "window": "5m",
            "count": 1,
            "coins": [{"coin": "bitcoin", "sentiment": _TREND_EXAMPLE, "price": _PRICE_EXAMPLE}],
        }
    )

    window: WindowSize
    count: int = Field(ge=0)
    coins: list[CoinSummary]


class SentimentResponse(ResponseModel):
    model_config = with_example(
        {
            "coin": "bitcoin",
            "window": "5m",
            "latest": _TREND_EXAMPLE,
            "price": _PRICE_EXAMPLE,
            "price_return": 0.004,
            "age_s": 12.5,
        }
    )

    coin: CoinId
    window: WindowSize
    latest: TrendWindow
    price: PriceTick | None = Field(default=None, description="latest price tick (null: no price yet)")
    price_return: float | None = Field(
        default=None, description="the price's return over the latest window: close / open - 1"
    )
    age_s: float = Field(description="seconds since the window ended (data freshness)")


class TimeseriesResponse(ResponseModel):
    model_config = with_example(
        {
            "coin": "bitcoin",
            "window": "5m",
            "from": "2026-11-28T17:00:00.000Z",
            "to": "2026-11-28T18:05:00.000Z",
            "count": 1,
            "points": [_TREND_EXAMPLE],
        }
    )

    coin: CoinId
    window: WindowSize
    from_: UtcDatetime | None = Field(alias="from", serialization_alias="from")
    to: UtcDatetime | None
    count: int = Field(ge=0)
    points: list[TrendWindow] = Field(description="oldest first")


class TrendingItem(ResponseModel):
    rank: int = Field(ge=1)
    coin: CoinId
    trend_score: float = Field(description="z-score part + sentiment-change part + mentions part")
    enough_mentions: bool = Field(description="false: under min_mentions, ranked after the rest")
    volume_zscore: float | None = Field(default=None, description="null while the series is too young")
    sentiment_change: float | None = None
    volume: int | None = None
    mean_score: float | None = None
    weighted_score: float | None = None
    window_start: UtcDatetime | None = None


class TrendingResponse(ResponseModel):
    model_config = with_example(
        {
            "window": "1h",
            "count": 1,
            "items": [
                {
                    "rank": 1,
                    "coin": "solana",
                    "trend_score": 6.37,
                    "enough_mentions": True,
                    "volume_zscore": 3.2,
                    "sentiment_change": 0.12,
                    "volume": 180,
                    "mean_score": 0.31,
                    "weighted_score": 0.35,
                    "window_start": "2026-11-28T17:00:00.000Z",
                }
            ],
        }
    )

    window: WindowSize
    count: int = Field(ge=0)
    items: list[TrendingItem] = Field(description="highest trend_score first (see the ranking)")


class MarketPart(ResponseModel):
    name: Literal["sentiment", "breadth", "momentum", "activity"]
    value: float = Field(ge=0, le=100, description="this part on the 0-100 scale")
    weight: float = Field(ge=0, le=1)
    detail: str


class CoinPrice(ResponseModel):
    """One coin's latest price and its returns, as the market view lists them."""

    coin: CoinId
    price: float | None = Field(default=None, description="latest price (null: no tick yet)")
    vs_currency: str | None = None
    as_of: UtcDatetime | None = Field(default=None, description="event time of that price")
    change_24h_pct: float | None = Field(default=None, description="24 h change reported by the provider")
    window_return: float | None = Field(
        default=None, description="return over the coin's latest window of the requested size"
    )


class MarketResponse(ResponseModel):
    model_config = with_example(
        {
            "window": "1h",
            "index": 61.8,
            "label": "greed",
            "coins": 12,
            "volume": 1520,
            "as_of": "2026-11-28T18:00:00.000Z",
            "parts": [
                {
                    "name": "sentiment",
                    "value": 62.0,
                    "weight": 0.5,
                    "detail": "volume-weighted score 0.24",
                },
                {"name": "breadth", "value": 66.7, "weight": 0.2, "detail": "8 of 12 coins positive"},
                {
                    "name": "momentum",
                    "value": 55.0,
                    "weight": 0.2,
                    "detail": "mean price return 0.2%",
                },
                {
                    "name": "activity",
                    "value": 60.0,
                    "weight": 0.1,
                    "detail": "mean volume z-score 0.41",
                },
            ],
            "prices": [
                {
                    "coin": "bitcoin",
                    "price": 91234.5,
                    "vs_currency": "usd",
                    "as_of": "2026-11-28T18:05:00.000Z",
                    "change_24h_pct": 1.5,
                    "window_return": 0.004,
                }
            ],
        }
    )

    window: WindowSize
    index: float = Field(ge=0, le=100, description="0 = extreme fear, 50 = neutral, 100 = extreme greed")
    label: Literal["extreme fear", "fear", "neutral", "greed", "extreme greed", "no data"]
    coins: int = Field(ge=0, description="coins with a window of this size")
    volume: int = Field(ge=0)
    as_of: UtcDatetime | None = Field(description="newest window start among the coins")
    parts: list[MarketPart]
    prices: list[CoinPrice] = Field(
        default_factory=list, description="every tracked coin's latest price and returns, by coin"
    )


class ScoreRequest(BaseModel):
    """Texts to score; limits come from settings (api.max_score_texts, model.max_text_chars)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"texts": ["BTC breaking out, very bullish!", "ETH dumps again"]}]},
    )

    texts: list[str]


class ExplainedSpan(ResponseModel):
    """A word or phrase of the text and how much it pushed the verdict towards its label."""

    text: str
    start: int = Field(ge=0, description="character offset in the scored text")
    end: int = Field(ge=0)
    weight: float = Field(description="drop of the label's probability when the span is removed")


class ScoreItem(ResponseModel):
    index: int = Field(ge=0, description="position in the request")
    label: Literal["negative", "neutral", "positive"] | None
    score: float | None = Field(default=None, ge=-1, le=1)
    confidence: float | None = Field(default=None, ge=0, le=1)
    p_negative: float | None = None
    p_neutral: float | None = None
    p_positive: float | None = None
    coins: list[str] = Field(default_factory=list)
    error: str | None = Field(default=None, description="why this text was not scored")
    explanation: list[ExplainedSpan] | None = Field(
        default=None, description="with explain=true: the spans that drove the label, strongest first"
    )


class ScoreResponse(ResponseModel):
    model_config = with_example(
        {
            "model_version": "cryptopulse-sentiment/3",
            "count": 1,
            "results": [
                {
                    "index": 0,
                    "label": "positive",
                    "score": 0.82,
                    "confidence": 0.86,
                    "p_negative": 0.04,
                    "p_neutral": 0.1,
                    "p_positive": 0.86,
                    "coins": ["bitcoin"],
                }
            ],
        }
    )

    model_version: str
    count: int = Field(ge=0)
    results: list[ScoreItem]
    explained: int | None = Field(
        default=None,
        ge=0,
        description="with explain=true: how many of the first texts (at most 8) were explained",
    )


class PostExplanation(ResponseModel):
    """Why the serving model gives one feed post its verdict (its label may differ from the
    post's when the post was scored by an earlier model)."""

    source_id: str
    label: Literal["negative", "neutral", "positive"]
    spans: list[ExplainedSpan] = Field(description="the spans that drove the label, strongest first")


class PostsResponse(ResponseModel):
    count: int = Field(ge=0)
    posts: list[ScoredPost] = Field(description="newest first")
    explanations: list[PostExplanation] | None = Field(
        default=None, description="with explain=N: the first N posts' explanations, in feed order"
    )
    explained_by: str | None = Field(
        default=None, description="with explain=N: the model version that explained them"
    )
    explain_error: str | None = Field(
        default=None, description="with explain=N: why there are no explanations (the posts still come)"
    )


class AlertsResponse(ResponseModel):
    count: int = Field(ge=0)
    alerts: list[Alert] = Field(description="newest first")


_QUALITY_EXAMPLE: dict[str, Any] = {
    "source": "reddit",
    "window_start": "2026-11-28T18:00:00Z",
    "window_end": "2026-11-28T18:05:00Z",
    "records": 412,
    "shares": {"completeness": 0.0, "validity": 0.0, "length": 0.019, "language": 0.073, "uniqueness": 0.012},
    "thresholds": {
        "completeness": 0.05,
        "validity": 0.01,
        "length": 0.1,
        "language": 0.05,
        "uniqueness": 0.05,
    },
    "breaches": ["language"],
    "judged": True,
    "quality_score": 0.896,
}


class QualityResponse(ResponseModel):
    """The latest closed data-quality window of every source the stream worker has judged."""

    model_config = with_example({"count": 1, "sources": [_QUALITY_EXAMPLE]})

    count: int = Field(ge=0)
    sources: list[DataQualityReport]


class QualityHistoryResponse(ResponseModel):
    """One source's closed data-quality windows, newest first (a day of 5-minute windows)."""

    model_config = with_example({"source": "reddit", "count": 1, "windows": [_QUALITY_EXAMPLE]})

    source: str
    count: int = Field(ge=0)
    windows: list[DataQualityReport] = Field(description="newest first")


class ModelStatus(ResponseModel):
    loaded: bool
    version: str | None = None
    uri: str
    error: str | None = Field(default=None, description="why the model is not loaded")


class Freshness(ResponseModel):
    latest_window_end: UtcDatetime | None = None
    latest_post_time: UtcDatetime | None = None
    window_age_s: float | None = Field(default=None, description="seconds since a trend view last changed")
    post_age_s: float | None = Field(default=None, description="seconds since the newest scored post's event")


class InfoResponse(ResponseModel):
    """What the dashboard shows in its header: model, data freshness, coverage."""

    version: str
    model: ModelStatus
    freshness: Freshness
    coins: int = Field(ge=0)
    auth_enabled: bool
    windows: list[WindowSize]


class Health(ResponseModel):
    status: Literal["ok"]


class Check(ResponseModel):
    ok: bool
    detail: str | None = None
    latency_ms: float | None = None


class Readiness(ResponseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, Check]
    model: ModelStatus


class PartitionInfo(ResponseModel):
    partition: int
    low: int
    high: int
    messages: int


class TopicInfo(ResponseModel):
    name: str
    partitions: int
    messages: int
    detail: list[PartitionInfo]


class TopicsResponse(ResponseModel):
    count: int
    topics: list[TopicInfo]


class GroupPartitionLag(ResponseModel):
    topic: str
    partition: int
    committed: int | None
    high: int
    lag: int


class ConsumerGroupInfo(ResponseModel):
    group: str
    state: str
    lag: int
    partitions: list[GroupPartitionLag]


class ConsumerGroupsResponse(ResponseModel):
    count: int
    groups: list[ConsumerGroupInfo]


class TopicMessage(ResponseModel):
    partition: int
    offset: int
    timestamp: datetime | None
    key: str | None
    value: str


class TopicMessagesResponse(ResponseModel):
    topic: str
    count: int
    messages: list[TopicMessage] = Field(description="newest first")


class ApiKeyInfo(ResponseModel):
    key_id: str
    name: str
    created: datetime
    revoked: bool
