"""The one Redis key schema, shared by every writer (``views``) and reader (API).

Every Redis key and pub/sub channel CryptoPulse uses is named here, from the prefix
``settings.redis.key_prefix``, together with how long each one lives (retention, caps,
TTLs), so writers and readers cannot drift apart. This module is pure: no I/O, no
Redis client. Every write to the materialized views goes through
:class:`views.writer.RedisViewWriter`.

See ``docs/redis-keys.md`` for the documented layout.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import WindowSize

WINDOW_SECONDS: dict[WindowSize, int] = {
    WindowSize.ONE_MINUTE: 60,
    WindowSize.FIVE_MINUTES: 300,
    WindowSize.ONE_HOUR: 3600,
    WindowSize.ONE_DAY: 86_400,
    WindowSize.ONE_HOUR_SLIDING: 3600,
}
"""Length of each window size (the sliding ``1h_5m`` window is one hour long)."""

RETENTION_SECONDS: dict[WindowSize, int] = {
    WindowSize.ONE_MINUTE: 24 * 3600,  # 1,440 points
    WindowSize.FIVE_MINUTES: 7 * 86_400,  # 2,016 points
    WindowSize.ONE_HOUR: 90 * 86_400,  # 2,160 points
    WindowSize.ONE_DAY: 3 * 365 * 86_400,  # 1,095 points
    WindowSize.ONE_HOUR_SLIDING: 7 * 86_400,  # 2,016 points
}
"""How far back ``trend:ts`` and the Spark series history keep windows, measured from the
newest window of the series; also the TTL of the Spark job's window components."""

POSTS_LATEST_MAX = 500
"""Length cap of ``posts:latest`` (the dashboard shows the newest few dozen)."""

ALERTS_LATEST_MAX = 200
"""Length cap of ``alerts:latest``."""

QUALITY_HISTORY_MAX = 288
"""Data-quality windows kept per source: a day of 5-minute windows."""

ALERT_MEMORY_S = 8 * 24 * 3600
"""How long an alert's id is remembered: longer than the longest window plus lateness."""


REVIEW_QUEUE_MAX = 5000
"""Candidates kept for human review; the least useful fall off first."""

REVIEW_POST_TTL_S = 30 * 86_400
"""How long a review candidate's post stays readable (the scored-post retention)."""

SHADOW_STATS_TTL_S = 30 * 86_400
"""How long a champion/challenger pair's shadow counters are kept after their last update."""


def live_counter_ttl(window_seconds: float) -> int:
    """TTL of a faust live counter: two windows (plus a second), so the previous window's
    counter is still readable while the next one fills."""
    return int(2 * window_seconds) + 1


@dataclass(frozen=True)
class RedisKeys:
    """Key and channel names under one prefix (``settings.redis.key_prefix``)."""

    prefix: str

    # -- materialized views (written through views.writer, read by the API) ------------
    def trend_latest(self, window: WindowSize | str, coin: str) -> str:
        """STRING: JSON TrendWindow, the latest window of this size for the coin."""
        return f"{self.prefix}:trend:latest:{WindowSize(window).value}:{coin}"

    def trend_ts(self, window: WindowSize | str, coin: str) -> str:
        """ZSET: score = window_start epoch seconds, member = JSON TrendWindow."""
        return f"{self.prefix}:trend:ts:{WindowSize(window).value}:{coin}"

    def trending(self, window: WindowSize | str) -> str:
        """ZSET: coin -> volume_zscore of its latest window of this size."""
        return f"{self.prefix}:trending:{WindowSize(window).value}"

    def coins(self) -> str:
        """SET: ids of every coin with at least one trend window."""
        return f"{self.prefix}:coins"

    def coin_meta(self, coin: str) -> str:
        """HASH: optional display metadata of a coin (name, symbol)."""
        return f"{self.prefix}:coin:meta:{coin}"

    def price_latest(self, coin: str) -> str:
        """STRING: JSON PriceTick, the newest tick of the coin."""
        return f"{self.prefix}:price:latest:{coin}"

    def posts_latest(self) -> str:
        """LIST: newest-first JSON ScoredPost, capped at POSTS_LATEST_MAX."""
        return f"{self.prefix}:posts:latest"

    def alert_seen(self, source_id: str) -> str:
        """STRING (TTL ALERT_MEMORY_S): marks an alert as raised, so it is raised once."""
        return f"{self.prefix}:alert:seen:{source_id}"

    def quality_latest(self, source: str) -> str:
        """STRING: JSON DataQualityReport of the source's latest closed window."""
        return f"{self.prefix}:quality:latest:{source}"

    def quality_history(self, source: str) -> str:
        """LIST: newest-first JSON DataQualityReport, capped at QUALITY_HISTORY_MAX."""
        return f"{self.prefix}:quality:history:{source}"

    def quality_sources(self) -> str:
        """SET: sources that have a data-quality report."""
        return f"{self.prefix}:quality:sources"

    def alerts_latest(self) -> str:
        """LIST: newest-first JSON Alert, capped at ALERTS_LATEST_MAX."""
        return f"{self.prefix}:alerts:latest"

    # -- learning loop (written through views.writer by the stream worker) --------------
    def review_queue(self) -> str:
        """ZSET: source_id -> review priority (higher first), capped at REVIEW_QUEUE_MAX.

        Priority mixes low confidence, member disagreement, champion/challenger
        disagreement and a recent sentiment shift of the post's coins."""
        return f"{self.prefix}:review:queue"

    def review_post(self, source_id: str) -> str:
        """STRING (TTL REVIEW_POST_TTL_S): JSON ReviewCandidate of one post: the ScoredPost
        fields plus ``priority``, ``reasons`` and ``challenger_label`` (may be null)."""
        return f"{self.prefix}:review:post:{source_id}"

    def review_done(self) -> str:
        """SET: source ids that already have feedback (left out of the queue)."""
        return f"{self.prefix}:review:done"

    def review_answers(self, source_id: str) -> str:
        """HASH (TTL learning.feedback_max_age_days): annotator -> that annotator's last
        Feedback JSON for one post, so a repeated answer is recognised (idempotency)."""
        return f"{self.prefix}:review:answers:{source_id}"

    def shadow_stats(self, champion: str, challenger: str) -> str:
        """HASH (TTL SHADOW_STATS_TTL_S): the shadow verdicts of one champion/challenger pair
        (runtime ``NAME/VERSION`` labels): ``records``, ``agree``, ``champion_{label}``,
        ``challenger_{label}``, and on feedback labels ``feedback``, ``champion_correct``,
        ``challenger_correct`` (names in ``views.writer``: ``SHADOW_*``)."""
        return f"{self.prefix}:shadow:stats:{champion}:{challenger}"

    # -- pub/sub ------------------------------------------------------------------------
    def live_scored(self) -> str:
        """CHANNEL: every ScoredPost as JSON."""
        return f"{self.prefix}:live:scored"

    def live_trends(self) -> str:
        """CHANNEL: every written TrendWindow as JSON."""
        return f"{self.prefix}:live:trends"

    def live_counters(self) -> str:
        """CHANNEL: faust's tumbling counter updates as JSON."""
        return f"{self.prefix}:live:counters"

    def live_alerts(self) -> str:
        """CHANNEL: every Alert as JSON, published by the alerting service as it consumes
        the alerts topic (the SSE stream's ``alert`` events)."""
        return f"{self.prefix}:live:alerts"

    # -- faust live counters (stream_processors/live.py) ---------------------------------
    def live_counter(self, window: str, coin: str) -> str:
        """HASH (TTL live_counter_ttl): faust's in-progress counter of a coin and window."""
        return f"{self.prefix}:live:counter:{window}:{coin}"

    def live_volume(self, window: str) -> str:
        """ZSET: coin -> volume of its current faust window."""
        return f"{self.prefix}:live:volume:{window}"

    # -- Spark trend job state (spark_jobs/sink_redis.py) ----------------------------------
    def spark_components(self, window: str, start_ms: int) -> str:
        """HASH (TTL = retention): ``source|coin`` -> JSON sums of one window, so
        micro-batches merge and a replay rewrites the same fields."""
        return f"{self.prefix}:spark:agg:{window}:{int(start_ms)}"

    def spark_history(self, window: str, coin: str, source: str) -> str:
        """ZSET: score = window_start epoch seconds, member = JSON point; the trailing
        windows of one series (per source too), for z-scores and correlations."""
        return f"{self.prefix}:spark:hist:{window}:{coin}:{source}"

    # -- API security (api/security.py) --------------------------------------------------
    def apikey(self, key_id: str) -> str:
        """HASH: one API key (sha256 hash, name, created, revoked)."""
        return f"{self.prefix}:apikey:{key_id}"

    def apikeys(self) -> str:
        """SET: ids of every API key ever created."""
        return f"{self.prefix}:apikeys"

    def ratelimit(self, key_id: str) -> str:
        """ZSET: request timestamps (ms) of one key within the sliding window."""
        return f"{self.prefix}:ratelimit:{key_id}"

    # -- alert subscriptions (api/routes/alerts.py writes, alerting/ reads) ---------------
    def alert_subscription(self, subscription_id: str) -> str:
        """STRING: JSON AlertSubscription (with its signing secret; never returned by the API
        after creation)."""
        return f"{self.prefix}:alertsub:{subscription_id}"

    def alert_subscriptions(self) -> str:
        """SET: ids of every alert subscription (what the alerting service matches against)."""
        return f"{self.prefix}:alertsubs"

    def alert_subscriptions_of(self, owner: str) -> str:
        """SET: ids of one owner's alert subscriptions (an API key id, or ``local``)."""
        return f"{self.prefix}:alertsubs:owner:{owner}"

    def alert_delivered(self, delivery_id: str) -> str:
        """STRING (TTL ALERT_MEMORY_S): marks a webhook delivery as done, so a restart that
        reads its alert again does not send it twice."""
        return f"{self.prefix}:alertdelivered:{delivery_id}"


__all__ = [
    "ALERTS_LATEST_MAX",
    "ALERT_MEMORY_S",
    "POSTS_LATEST_MAX",
    "QUALITY_HISTORY_MAX",
    "RETENTION_SECONDS",
    "REVIEW_POST_TTL_S",
    "REVIEW_QUEUE_MAX",
    "SHADOW_STATS_TTL_S",
    "WINDOW_SECONDS",
    "RedisKeys",
    "live_counter_ttl",
]
