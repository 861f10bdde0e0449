"""The one typed settings object for every CryptoPulse component.

Every value can be overridden from the environment with the ``CRYPTOPULSE_`` prefix
(nested sections use ``__``: ``CRYPTOPULSE_KAFKA__BOOTSTRAP_SERVERS``) or from a
``.env`` file in the working directory. Settings are frozen: components receive them
once at start-up and never mutate them. Defaults are sized for a 2-core, 24 GB
machine running the whole stack; a real cluster overrides hosts, partitions and heaps.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CRYPTOPULSE_"
ENV_NESTED_DELIMITER = "__"

Port = Annotated[int, Field(ge=1, le=65535)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback) / "cryptopulse"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """Apache Kafka (KRaft, single node locally)."""

    bootstrap_servers: str | None = Field(
        default=None, description="clients' bootstrap list; default host:port"
    )
    host: str = "127.0.0.1"
    port: Port = 9092
    controller_port: Port = 9093
    version: str = Field(default="4.1.1", pattern=r"^4\.\d+\.\d+$")
    heap: str = Field(default="512m", pattern=r"^\d+[mg]$", description="JVM -Xmx/-Xms of the broker")
    default_partitions: int = Field(default=3, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=16)
    topic_prefix: str = Field(default="cryptopulse", pattern=r"^[a-zA-Z0-9._-]+$")
    ready_timeout_s: float = Field(default=90.0, gt=0)
    compression_type: Literal["zstd", "lz4", "snappy", "gzip", "none"] = "zstd"

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"{self.host}:{self.port}"


class RedisSettings(_Section):
    """Redis holds the materialized views, rate limits and API keys."""

    url: str | None = Field(default=None, pattern=r"^rediss?://", description="default redis://host:port/db")
    host: str = "127.0.0.1"
    port: Port = 6379
    db: int = Field(default=0, ge=0, le=15)
    maxmemory: str = Field(default="1gb", pattern=r"^\d+(mb|gb)$")
    key_prefix: str = "cp"

    @property
    def dsn(self) -> str:
        return self.url or f"redis://{self.host}:{self.port}/{self.db}"


class MlflowSettings(_Section):
    """MLflow tracking server and model registry."""

    tracking_uri: str | None = Field(
        default=None, pattern=r"^(https?|file|sqlite):", description="default http://host:port"
    )
    host: str = "127.0.0.1"
    port: Port = 5000
    workers: int = Field(default=1, ge=1, le=32)
    experiment: str = "cryptopulse-sentiment"
    registered_model: str = "cryptopulse-sentiment"
    # env=prod: MLflow runs its basic-auth app (docs/platform.md, "Model registry access").
    # Checked where used (scoring.registry_uri), not here: a validation error echoes its input.
    username: str | None = Field(
        default=None,
        description="MLflow account of this process: the reader for services, the admin for the model CLI",
    )
    password: SecretStr | None = Field(default=None, description="password of mlflow.username")
    admin_username: str = Field(
        default="admin",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="prod: the one account that can move aliases",
    )
    admin_password: SecretStr | None = Field(
        default=None, description="prod: admin password the server is bootstrapped with (no default)"
    )
    reader_username: str = Field(
        default="cryptopulse-reader",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="prod: the services' read-only account",
    )
    reader_password: SecretStr | None = Field(
        default=None, description="prod: password of reader_username, created by the platform"
    )

    @property
    def uri(self) -> str:
        return self.tracking_uri or f"http://{self.host}:{self.port}"


class PrometheusSettings(_Section):
    host: str = "127.0.0.1"
    port: Port = 9090
    retention: str = Field(default="2d", pattern=r"^\d+[hdw]$")
    scrape_interval: str = Field(default="15s", pattern=r"^\d+s$")


class ModelSettings(_Section):
    """Training, export and the serving runtime."""

    uri: str = Field(
        default="models:/cryptopulse-sentiment@champion",
        description="models:/NAME@ALIAS, models:/NAME/VERSION or a local artifact directory",
    )
    intra_op_threads: int = Field(default=1, ge=1, le=64)
    max_text_chars: int = Field(default=1000, ge=10, le=100_000)
    batch_size: int = Field(default=32, ge=1, le=4096)
    seed: int = 13
    promotion_min_gain: float = Field(default=0.005, ge=0.0, le=1.0)
    promotion_max_slowdown: float = Field(default=1.25, ge=1.0, le=100.0)
    max_length: int = Field(
        default=64, ge=8, le=512, description="transformer tokens per text (train and serve)"
    )
    data_dir: Path | None = Field(default=None, description="labelled data; default: data/ in the repository")
    train_epochs: float = Field(default=2.0, gt=0.0, le=20.0)
    train_max_examples: int = Field(
        default=18_000, ge=16, description="cap on transformer fine-tuning examples"
    )
    train_learning_rate: float = Field(default=6e-5, gt=0.0, lt=1.0)
    train_batch_size: int = Field(default=32, ge=1, le=1024)


class SparkSettings(_Section):
    master: str = Field(
        default="local[2]",
        description="the one setting to run the same jobs on a cluster, e.g. spark://host:7077 "
        "(docs/scaling.md)",
    )
    shuffle_partitions: int = Field(default=4, ge=1, le=100_000)
    driver_memory: str = Field(default="1g", pattern=r"^\d+[mg]$")
    watermark: str = "10 minutes"
    metrics_port: Port = 9102
    metrics_host: str = Field(
        default="127.0.0.1", description="/metrics bind address; 0.0.0.0 in a container Prometheus scrapes"
    )
    # Added for spark_jobs (trend windows, lake, backfill).
    app_name: str = Field(default="cryptopulse-trends", pattern=r"^[a-zA-Z0-9._-]+$")
    lake_dir: Path | None = Field(default=None, description="Parquet lake; default: home/lake")
    checkpoint_dir: Path | None = Field(
        default=None, description="streaming checkpoints; default: home/checkpoints"
    )
    trigger_interval: str = Field(
        default="1 second",
        description="micro-batch trigger of `spark stream`'s trend query: how soon a scored post reaches "
        "the views (docs/benchmarks.md, Spark)",
    )
    lake_interval: str = Field(
        default="1 minute",
        description="how often `spark stream` adds files to the lake (events archive, trend windows); "
        "longer means fewer, larger files, and never delays the views",
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=10,
        ge=0,
        le=60_000,
        description="the Kafka source's fetch.max.wait.ms: Kafka's 500 ms default adds half a second "
        "to every micro-batch",
    )
    sink_retry_s: float = Field(
        default=120.0,
        ge=0,
        description="a micro-batch retries Redis this long (backoff) before the job exits to be restarted",
    )
    starting_offsets: Literal["earliest", "latest"] = Field(
        default="earliest", description="where a stream without a checkpoint starts"
    )
    max_offsets_per_trigger: int | None = Field(
        default=100_000, ge=1, description="records per micro-batch cap"
    )
    trailing_windows: int = Field(default=20, ge=2, le=1000, description="z-score / correlation lookback")
    lead_lag_max_windows: int = Field(
        default=6,
        ge=0,
        le=100,
        description="sentiment/price lead-lag searched over -K..K windows within the trailing windows",
    )
    connect_port: int = Field(
        default=15002,
        ge=0,
        le=65535,
        description="Spark Connect endpoint of `spark stream`'s application, where `cryptopulse backfill` "
        "runs in an already warm JVM (docs/spark.md); 0: none",
    )
    connect_host: str = Field(
        default="127.0.0.1",
        description="bind address of that endpoint: it runs whatever query it is sent by a client "
        "holding the token it issues (sent in clear), so keep it on loopback",
    )
    backfill_remote: str = Field(
        default="auto",
        pattern=r"^(auto|local|sc://\S+)$",
        description="where `cryptopulse backfill` runs: auto (the stream's Spark Connect endpoint when it "
        "serves one in this home and answers, else a Spark session of its own), local (always its "
        "own), or sc://HOST:PORT",
    )
    backfill_warm_up_events: int = Field(
        default=200_000,
        ge=0,
        le=10_000_000,
        description="synthetic events `spark stream` runs through the backfill's query a minute after "
        "it starts, so that backfills sent to its Spark Connect endpoint find a warm JVM; 0: none",
    )
    backfill_warm_up_runs: int = Field(
        default=2,
        ge=1,
        le=10,
        description="how many times the warm-up runs the backfill's query: a second run gets the JIT "
        "further, about 1.5 s off the first 1 M-event backfill (docs/benchmarks.md)",
    )
    backfill_kafka_slack_s: int = Field(
        default=86_400,
        ge=0,
        description="Kafka timestamps may trail event times by this much (offsets-for-times)",
    )
    ui_enabled: bool = False
    trends_topic: bool = Field(
        default=True, description="publish every updated trend window to the trends topic"
    )
    alert_zscore: float = Field(
        default=3.0, gt=0, description="volume z-score that raises a volume_spike alert"
    )
    alert_sentiment_zscore: float = Field(
        default=3.0, gt=0, description="|sentiment z-score| that raises a sentiment_shift alert"
    )
    alert_min_shift: float = Field(
        default=0.2, ge=0, le=2, description="smallest sentiment change (on [-1, 1]) that alerts"
    )
    alert_min_volume: int = Field(default=5, ge=1, description="fewer mentions never alert")
    alert_windows: list[str] = Field(
        default_factory=lambda: ["5m", "1h"], description="window sizes that can raise alerts"
    )
    extra_conf: dict[str, str] = Field(
        default_factory=dict, description="more spark.* settings, e.g. on a cluster"
    )
    # Added for spark_jobs.history (bundled history on a first `up`).
    history_on_first_up: bool = Field(
        default=True, description="a first `cryptopulse up` seeds the bundled history into the lake and Redis"
    )
    history_days: int = Field(
        default=7, ge=1, le=30, description="days of bundled history to seed, ending now"
    )
    history_file: Path | None = Field(
        default=None, description="history bundle; default: the one shipped in spark_jobs/data/history"
    )


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: Port = 8000
    workers: int = Field(default=2, ge=1, le=64)
    cors_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8501", "http://localhost:8501"]
    )
    auth_enabled: bool = False
    open_health: bool = True
    open_metrics: bool = True
    rate_limit_per_minute: int = Field(default=600, ge=1)
    max_body_bytes: int = Field(default=256_000, ge=1024)
    max_score_texts: int = Field(default=64, ge=1, le=10_000)
    rate_limit_window_s: int = Field(
        default=60, ge=1, le=86_400, description="sliding window of the rate limit"
    )
    key_cache_s: float = Field(default=5.0, ge=0, le=3600, description="API key cache; revocation delay")
    require_model: bool = Field(
        default=False, description="/readyz fails while the scoring model is not loaded"
    )
    model_poll_s: float = Field(
        default=30.0, gt=0, le=3600, description="registry alias poll interval (hot swap of champion)"
    )
    sse_heartbeat_s: float = Field(default=15.0, gt=0, le=300, description="comment line keeping SSE alive")
    admin_enabled: bool = Field(
        default=True, description="serve /v1/admin/topics (Kafka view for the dashboard)"
    )
    view_cache_s: float = Field(
        default=0.5, ge=0, le=60, description="per-worker cache of hot view reads; 0 = off"
    )
    anonymous_rate_limit_per_minute: int = Field(
        default=600, ge=0, description="per client address and window while auth is off; 0 = none"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="proxy addresses or networks whose X-Forwarded-For names the client; default: none",
    )
    sse_max_streams: int = Field(default=100, ge=1, description="open /v1/stream connections per API worker")
    sse_max_streams_per_client: int = Field(
        default=5, ge=1, description="open streams per API key (client address with auth off), per worker"
    )
    sse_max_lifetime_s: float = Field(
        default=3600.0, gt=0, le=86_400, description="a stream then ends cleanly; clients reconnect"
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
        return value


class DashboardSettings(_Section):
    host: str = "127.0.0.1"
    port: Port = 8501
    refresh_s: int = Field(default=5, ge=1, le=3600)
    api_url: str | None = Field(default=None, pattern=r"^https?://", description="default: the local API")
    api_key: SecretStr | None = Field(default=None, description="API key the dashboard sends when auth is on")
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="per API call")


class StreamSettings(_Section):
    """faust-streaming workers."""

    web_port: Port = 6066
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    batch_size: int = Field(
        default=128,
        ge=1,
        le=10_000,
        description="clean posts per scoring batch (fewer hand-offs to the scoring process)",
    )
    batch_within_s: float = Field(
        default=0.05, gt=0, le=10, description="longest a scoring batch waits to fill"
    )
    dedup_window_s: int = Field(default=900, ge=1, description="same text or id within this many seconds")
    min_text_chars: int = Field(default=10, ge=1)
    app_id: str = Field(
        default="cryptopulse-stream", pattern=r"^[a-zA-Z0-9._-]+$", description="consumer group"
    )
    web_host: str = "127.0.0.1"
    author_salt: SecretStr | None = Field(
        default=None,
        description="salt of author-name hashes; default: random, created once under home/secrets",
    )
    languages: list[str] = Field(
        default_factory=lambda: ["en", "es", "de", "fr", "pt", "it", "nl", "tr", "ru", "id"],
        description="languages lingua may answer with; fewer means less memory",
    )
    short_text_chars: int = Field(default=30, ge=0, description="below this many letters: script check only")
    require_coin: bool = Field(default=False, description="dead-letter texts that mention no catalog coin")
    model_poll_s: float = Field(default=30.0, gt=0, description="registry alias poll interval (hot swap)")
    live_redis: bool = Field(default=True, description="mirror counters and publish live events to Redis")
    commit_interval_s: float = Field(default=1.0, gt=0, le=60, description="consumer offset commit interval")
    session_timeout_s: float = Field(default=10.0, ge=6, le=300, description="crashed worker detected after")
    stall_timeout_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="a source partition backlogged with no progress this long restarts the worker (0: off)",
    )
    ack_timeout_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="a scored batch not acked while the broker answered at two such intervals in a row "
        "restarts the worker (0: wait for ever)",
    )
    scoring_process: bool = Field(default=True, description="model in a child process (no GIL contention)")
    quality_window_s: int = Field(
        default=300, ge=60, le=86_400, description="data-quality window per source (judged once closed)"
    )
    quality_min_records: int = Field(
        default=50, ge=1, description="smaller data-quality windows are reported, never alerted on"
    )
    drift_window_s: int = Field(
        default=3600, ge=60, le=7 * 86_400, description="prediction-drift window per model version"
    )
    drift_min_records: int = Field(default=500, ge=1, description="smaller drift windows are not judged")
    drift_psi_threshold: float = Field(
        default=0.25, gt=0, le=10, description="PSI above which a model_drift alert is raised"
    )
    drift_p_value: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="input drift also needs a KS / chi-square p-value below this (and PSI over threshold)",
    )
    drift_min_reference: int = Field(
        default=50, ge=10, description="a source with fewer reference rows counts as having no reference"
    )
    producer_linger_ms: int = Field(
        default=20, ge=0, le=1000, description="producer batching delay: fewer, larger produce requests"
    )
    fetch_min_bytes: int = Field(
        default=65_536,
        ge=1,
        le=52_428_800,
        description="the broker holds a fetch until this much data (or fetch_max_wait_ms): fewer fetches",
    )
    fetch_max_wait_ms: int = Field(
        default=20, ge=0, le=10_000, description="longest the broker holds a fetch for fetch_min_bytes"
    )


class ProducerSettings(_Section):
    metrics_port: Port = 9101
    metrics_host: str = Field(
        default="127.0.0.1", description="/metrics bind address; 0.0.0.0 in a container Prometheus scrapes"
    )
    replay_rate: float = Field(
        default=0.05,
        gt=0,
        le=100_000,
        description=(
            "texts per second; the default matches the seeded history's density (no false volume "
            "spikes) and one pass of the bundled texts (4 h) outlasts stream.dedup_window_s"
        ),
    )
    reddit_client_id: SecretStr | None = None
    reddit_client_secret: SecretStr | None = None
    reddit_user_agent: str = "cryptopulse/0.1 (sentiment research; +https://github.com/cryptopulse)"
    newsapi_key: SecretStr | None = None
    coingecko_api_key: SecretStr | None = None
    price_interval_s: float = Field(default=60.0, ge=1)
    # Reddit: app-only OAuth2 when id+secret are set, else public .json listings.
    subreddits: list[str] = Field(
        default_factory=lambda: [
            "CryptoCurrency",
            "Bitcoin",
            "ethereum",
            "CryptoMarkets",
            "altcoin",
            "SatoshiStreetBets",
        ]
    )
    reddit_auth_url: str = "https://www.reddit.com/api/v1/access_token"
    reddit_api_base: str = "https://oauth.reddit.com"
    reddit_public_base: str = "https://www.reddit.com"
    reddit_interval_s: float = Field(default=60.0, ge=0)
    reddit_page_limit: int = Field(default=100, ge=1, le=100)
    reddit_max_pages: int = Field(default=10, ge=1, le=10, description="listings stop at ~1000 items")
    reddit_initial_pages: int = Field(default=1, ge=1, le=10, description="backfill on a first run")
    # News: RSS/Atom feeds (bundled list unless a file is given) and NewsAPI when a key is set.
    news_feeds_file: Path | None = None
    news_interval_s: float = Field(default=300.0, ge=0)
    news_fetch_workers: int = Field(default=4, ge=1, le=64)
    news_seen_per_feed: int = Field(default=2000, ge=10)
    newsapi_url: str = "https://newsapi.org/v2/everything"
    newsapi_query: str = "bitcoin OR ethereum OR crypto OR cryptocurrency"
    newsapi_interval_s: float = Field(default=900.0, ge=0, description="developer plan: 100 requests/day")
    # Prices: CoinGecko (demo key header by default; pro keys use pro-api + x-cg-pro-api-key).
    coingecko_base_url: str = "https://api.coingecko.com/api/v3"
    coingecko_key_header: str = "x-cg-demo-api-key"
    coins: list[str] = Field(
        default_factory=lambda: [
            "bitcoin",
            "ethereum",
            "solana",
            "ripple",
            "cardano",
            "dogecoin",
            "binancecoin",
            "tron",
            "avalanche-2",
            "chainlink",
            "polkadot",
            "litecoin",
        ]
    )
    vs_currency: str = Field(default="usd", pattern=r"^[a-z]{3,5}$")
    # HTTP behaviour shared by every connector.
    http_timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=20)
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=300.0, ge=0)
    # Replay: bundled real texts as a live stream plus random-walk price ticks.
    replay_dir: Path | None = None
    replay_time_compression: float = Field(default=1.0, gt=0, le=100_000)
    replay_loop: bool = True
    replay_price_interval_s: float = Field(default=5.0, gt=0, description="event-time seconds between ticks")
    replay_seed: int = 13
    flush_every: int = Field(default=500, ge=1, description="replay: records per flush+checkpoint")
    checkpoint_every_s: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description=(
            "replay: flush+checkpoint at least this often (seconds), so a crash re-sends at most this "
            "much, well inside stream.dedup_window_s (500 records at the default 0.05/s were 2.8 h)"
        ),
    )


class SupervisorSettings(_Section):
    """The home's supervisord, which runs and restarts the services of ``cryptopulse up``."""

    start_retries: int = Field(
        default=3,
        ge=0,
        le=100,
        description="a service that exits right after its start is retried this often, then given up",
    )
    metrics_port: Port = Field(default=9103, description="restart counts per service, scraped by Prometheus")


class LearningSettings(_Section):
    """The learning loop: human feedback, retraining triggers, the shadow challenger, promotion."""

    # --- feedback ---
    feedback_weight: float = Field(
        default=2.0,
        ge=0.0,
        le=100.0,
        description="training weight of one feedback label (a dataset example is 1)",
    )
    feedback_max_age_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="feedback on a post older than this is refused (scored-post retention)",
    )
    # --- retraining triggers ---
    retrain_schedule: str = Field(
        default="0 3 * * 1",
        description="cron expression (UTC) of the scheduled retraining; weekly by default",
    )
    retrain_feedback_labels: int = Field(
        default=500, ge=1, description="new feedback labels that start a run"
    )
    retrain_on_drift: bool = Field(default=True, description="a sustained model-drift alert starts a run")
    retrain_drift_alerts: int = Field(
        default=3, ge=1, le=1000, description="drift alerts in a row that count as sustained"
    )
    retrain_profile: Literal["fast", "teacher"] = Field(
        default="fast", description="training profile of triggered runs (teacher: teacher-and-distill)"
    )
    orchestrator_metrics_port: Port = Field(default=9104, description="the retraining service's /metrics")
    # --- shadow challenger ---
    shadow_enabled: bool = Field(default=True, description="score live posts with the challenger too")
    shadow_share: float = Field(
        default=1.0, ge=0.0, le=1.0, description="share of live posts the challenger also scores"
    )
    # --- promotion ---
    auto_promote: bool = Field(
        default=False, description="promote a challenger that passes the gate, unattended"
    )
    promotion_min_shadow_records: int = Field(
        default=200, ge=0, description="shadow verdicts needed before the gate weighs agreement"
    )
    promotion_min_agreement: float = Field(
        default=0.6, ge=0.0, le=1.0, description="champion-challenger agreement below this blocks promotion"
    )
    promotion_min_feedback_labels: int = Field(
        default=20, ge=0, description="feedback labels needed before the gate weighs accuracy on them"
    )


class AlertingSettings(_Section):
    """Alert delivery to subscribers (signed webhooks) and the Alertmanager that feeds it."""

    host: str = Field(
        default="127.0.0.1", description="the alerting service's bind address (0.0.0.0 in a container)"
    )
    port: Port = Field(
        default=9105, description="the alerting service's /metrics, /healthz and POST /alertmanager"
    )
    alertmanager_port: Port = Field(
        default=9095, description="Alertmanager's web port (Prometheus sends its alerts there)"
    )
    max_attempts: int = Field(
        default=5, ge=1, le=50, description="delivery attempts of one webhook before it is dead-lettered"
    )
    backoff_s: float = Field(
        default=1.0, gt=0.0, le=300.0, description="first retry delay; doubled per attempt, with jitter"
    )
    backoff_max_s: float = Field(default=60.0, gt=0.0, le=3600.0, description="longest retry delay")
    timeout_s: float = Field(default=10.0, gt=0.0, le=120.0, description="one webhook request's timeout")
    max_subscriptions_per_key: int = Field(
        default=20, ge=1, le=10_000, description="alert subscriptions one API key (or local owner) may hold"
    )
    concurrency: int = Field(default=8, ge=1, le=256, description="webhook deliveries of one alert at once")
    allow_private_targets: bool = Field(
        default=True,
        description="webhooks to loopback and private-network addresses (off by default under "
        "CRYPTOPULSE_ENV=prod); link-local and cloud-metadata addresses are always refused",
    )


def _default_unless_set(data: dict[str, Any], section: str, name: str, value: object) -> dict[str, Any]:
    """``data`` with ``section.name`` set to ``value`` unless it was given explicitly."""
    given = data.get(section)
    if given is None:
        return {**data, section: {name: value}}
    if isinstance(given, dict) and name not in given:
        return {**data, section: {**given, name: value}}
    if isinstance(given, BaseModel) and name not in given.model_fields_set:
        return {**data, section: given.model_copy(update={name: value})}
    return data


class Settings(BaseSettings):
    """Root settings. Read with :func:`get_settings`; never construct ad hoc in components."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        frozen=True,
        extra="ignore",
    )

    env: Literal["dev", "test", "prod"] = Field(
        default="dev",
        description="prod: API keys on by default, and settings refuse api.auth_enabled=false",
    )
    log_level: LogLevel = "INFO"
    log_json: bool = False
    log_rotate_mb: int = Field(
        default=64, ge=1, description="a service log over this size moves to NAME.log.1 (one kept)"
    )
    home: Path = Field(default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share"))
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"))

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    mlflow: MlflowSettings = MlflowSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    model: ModelSettings = ModelSettings()
    spark: SparkSettings = SparkSettings()
    api: ApiSettings = ApiSettings()
    dashboard: DashboardSettings = DashboardSettings()
    stream: StreamSettings = StreamSettings()
    producer: ProducerSettings = ProducerSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    learning: LearningSettings = LearningSettings()
    alerting: AlertingSettings = AlertingSettings()

    @field_validator("home", "cache_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="before")
    @classmethod
    def _prod_defaults(cls, data: Any) -> Any:
        """In production API keys are on and webhooks may not reach private networks by
        default; only an explicit value can say otherwise (``_prod_requires_api_keys`` then
        refuses keys off)."""
        if not isinstance(data, dict) or data.get("env") != "prod":
            return data
        data = _default_unless_set(data, "api", "auth_enabled", True)
        return _default_unless_set(data, "alerting", "allow_private_targets", False)

    @model_validator(mode="after")
    def _prod_requires_api_keys(self) -> Self:
        """An API without keys in production serves the views and /v1/score to anyone who
        reaches it, and a non-loopback bind makes that anyone on the network."""
        if self.env != "prod" or self.api.auth_enabled:
            return self
        exposure = (
            ""
            if _is_loopback(self.api.host)
            else f" on CRYPTOPULSE_API__HOST={self.api.host}, reachable from other machines"
        )
        raise PydanticCustomError(
            "prod_without_api_keys",
            "CRYPTOPULSE_ENV=prod refuses CRYPTOPULSE_API__AUTH_ENABLED=false: the API would serve "
            "without keys{exposure}. Remove CRYPTOPULSE_API__AUTH_ENABLED (prod turns keys on) and "
            "create keys with `cryptopulse apikey create NAME`, or use CRYPTOPULSE_ENV=dev with a "
            "loopback CRYPTOPULSE_API__HOST.",
            {"exposure": exposure},
        )

    @property
    def run_dir(self) -> Path:
        """The home's supervisord: its socket, configuration and pid file, and restart counts."""
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"


def _is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SettingsError(RuntimeError):
    """A settings value is invalid; the message names the variable and what is allowed."""


def _env_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part).upper() for part in loc)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            if not error["loc"]:  # a rule across variables names them itself (and echoes no input)
                lines.append(error["msg"])
                continue
            name = _env_name(error["loc"])
            given = error.get("input")
            lines.append(f"{name}={given!r}: {error['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


def env_var_names() -> set[str]:
    """Every environment variable the settings read (for docs and config cross-checks)."""
    names = set()
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, _Section):
            names |= {_env_name((name, sub)) for sub in annotation.model_fields}
        else:
            names.add(_env_name((name,)))
    return names


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, validated once at start-up."""
    return load_settings()


def render_configuration_doc() -> str:
    """Markdown table of every variable with its default (``docs/configuration.md``)."""
    defaults = Settings.model_construct()
    lines = [
        "# Configuration",
        "",
        "Generated by `python -m core.settings` from `core/settings.py`;",
        "a test fails when it is stale. Every variable can also be set in a `.env` file in the working",
        "directory.",
        "Defaults are sized for a 2-core, 24 GB machine; `home` and `cache_dir` default to",
        "`~/.local/share/cryptopulse` and `~/.cache/cryptopulse`.",
        "",
        "| variable | default | description |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, _Section):
            section = getattr(defaults, name)
            for sub, subfield in annotation.model_fields.items():
                value = getattr(section, sub)
                shown = "(secret)" if isinstance(value, SecretStr) else ("" if value is None else value)
                doc = (subfield.description or "").replace("|", "\\|")
                lines.append(f"| `{_env_name((name, sub))}` | `{shown}` | {doc} |")
        elif name not in ("home", "cache_dir"):
            lines.append(
                f"| `{_env_name((name,))}` | `{getattr(defaults, name)}` | {field.description or ''} |"
            )
        else:
            lines.append(f"| `{_env_name((name,))}` | see above | {field.description or ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").write_text(
        render_configuration_doc(), "utf-8"
    )
