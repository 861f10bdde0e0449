"""The faust application: its configuration, and :func:`create_app`, the one entry that wires it.

The worker is split the way faust projects split an app: topics (:mod:`.topics`), tables
(:mod:`.tables`), one module per agent (:mod:`.agents.clean`, :mod:`.agents.score`,
:mod:`.agents.counts`, :mod:`.agents.shadow`; the delivery contract is in
:mod:`.agents`), timers (:mod:`.monitors`) and web views (:mod:`.views`). Each part
declares itself on the app it is given; :func:`create_app` builds them from settings, in
a fixed order, and keeps them in ``app.parts``.

Run it with ``cryptopulse worker`` or ``python -m stream_processors worker``. Settings
decide everything: broker, consumer group (``{topic_prefix}.{stream.app_id}``, so
test runs with their own topic prefix never share state), web port for /metrics,
and faust's state directory under ``settings.home / "faust"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import faust
from faust.types import TransportT

from core.settings import Settings, get_settings
from stream_processors.faust_ext import StreamTransport
from stream_processors.liveness import request_graceful_stop

if TYPE_CHECKING:
    from scoring.holder import ModelHolder, Resolver
    from stream_processors.agents.clean import CleanAgent
    from stream_processors.agents.counts import CountAgent
    from stream_processors.agents.prices import PriceAgent
    from stream_processors.agents.score import ScoreAgent
    from stream_processors.agents.shadow import ShadowAgent
    from stream_processors.cleaning import TextTagger
    from stream_processors.live import LivePublisher
    from stream_processors.monitors.drift import DriftCheck
    from stream_processors.monitors.heartbeat import Heartbeat
    from stream_processors.monitors.lag import LagWatch
    from stream_processors.monitors.quality import QualityCheck
    from stream_processors.tables import StreamTables
    from stream_processors.topics import StreamTopics


class StreamApp(faust.App):
    """A faust app with the worker's consumer and table recovery (see :mod:`.faust_ext`)."""

    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 500
    parts: WorkerParts  # set by create_app

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Called (synchronously) before each offset commit: buffered table writes (the clean
        # agent's claims) reach the producer, which faust's commit flushes before the offsets.
        self.before_commit: list[Callable[[], object]] = []

    def _new_transport(self) -> TransportT:
        return StreamTransport(self.conf.broker_consumer, self)

    @property
    def stalled(self) -> bool:
        """Whether a stall stopped this worker: the worker commands then restart it (see liveness)."""
        return self.parts.lag.stalled


@dataclass(frozen=True)
class WorkerParts:
    """What :func:`create_app` declared on the app, kept for the worker commands and tests."""

    topics: StreamTopics
    tables: StreamTables
    clean: CleanAgent
    score: ScoreAgent
    count: CountAgent
    shadow: ShadowAgent
    prices: PriceAgent
    lag: LagWatch
    quality: QualityCheck
    drift: DriftCheck
    heartbeat: Heartbeat
    holder: ModelHolder
    publisher: LivePublisher

    async def close(self) -> None:
        """On a clean shutdown: no successor needs to wait, and Redis and the model are released."""
        self.heartbeat.clear()
        await self.publisher.close()
        await self.holder.close()
        await self.shadow.holder.close()


def group_id(settings: Settings) -> str:
    return f"{settings.kafka.topic_prefix}.{settings.stream.app_id}"


def faust_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of :class:`faust.App`, kept apart so tests can inspect them."""
    stream = settings.stream
    return {
        "broker": [f"kafka://{server.strip()}" for server in settings.kafka.bootstrap.split(",")],
        "datadir": str(settings.home / "faust"),
        "store": "memory://",
        "autodiscover": False,
        "processing_guarantee": stream.processing_guarantee,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "topic_partitions": settings.kafka.default_partitions,
        "topic_replication_factor": settings.kafka.replication_factor,
        "consumer_auto_offset_reset": "earliest",
        "broker_commit_interval": stream.commit_interval_s,
        "broker_session_timeout": stream.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, stream.session_timeout_s / 3),
        "producer_acks": -1,
        "producer_linger_ms": stream.producer_linger_ms,
        "table_cleanup_interval": 30.0,
        "TableManager": "stream_processors.faust_ext:StreamTableManager",
        "web_enabled": True,
        "web_host": stream.web_host,
        "web_port": stream.web_port,
        "web_bind": stream.web_host,
        "web": "aiohttp://",
    }


def create_app(
    settings: Settings | None = None,
    *,
    holder: ModelHolder | None = None,
    challenger: ModelHolder | None = None,
    challenger_resolver: Resolver | None = None,
    tagger: TextTagger | None = None,
    publisher: LivePublisher | None = None,
    on_stall: Callable[[], None] = request_graceful_stop,
    broker_up: Callable[[], bool] | None = None,
) -> StreamApp:
    """Build a configured app with the worker's topics, tables, agents, timers and views.

    The keyword arguments replace a part built from settings (tests: a fake model or
    challenger, a recorded stall, a broker that does not answer). A given ``challenger``
    holder is followed with ``challenger_resolver`` (None: it stays as given).
    """
    from core.kafka import broker_ready
    from scoring.holder import ModelHolder, registry_resolver
    from stream_processors.agents import DeadLetters
    from stream_processors.agents.clean import CleanAgent
    from stream_processors.agents.counts import CountAgent
    from stream_processors.agents.prices import PriceAgent
    from stream_processors.agents.score import ScoreAgent
    from stream_processors.agents.shadow import ShadowAgent, challenger_uri, registry_mlflow_logger
    from stream_processors.cleaning import CleaningConfig
    from stream_processors.drift import DriftMonitor
    from stream_processors.live import LivePublisher
    from stream_processors.monitors.alerts import AlertSender
    from stream_processors.monitors.drift import DriftCheck
    from stream_processors.monitors.heartbeat import Heartbeat
    from stream_processors.monitors.lag import LagWatch
    from stream_processors.monitors.quality import QualityCheck
    from stream_processors.quality import QualityMonitor
    from stream_processors.review import CoinShifts, ReviewRanker
    from stream_processors.tables import StreamTables
    from stream_processors.topics import StreamTopics
    from stream_processors.views import register_views

    settings = settings or get_settings()
    stream = settings.stream
    (settings.home / "faust").mkdir(parents=True, exist_ok=True)
    app = StreamApp(group_id(settings), **faust_config(settings))
    app.fetch_min_bytes = stream.fetch_min_bytes
    app.fetch_max_wait_ms = stream.fetch_max_wait_ms
    if tagger is None:
        from scoring.coins import CoinCatalog

        tagger = CoinCatalog.default()
    holder = holder or ModelHolder.from_settings(settings, child_process=stream.scoring_process)
    publisher = publisher or LivePublisher(
        settings.redis.dsn, settings.redis.key_prefix, enabled=stream.live_redis
    )

    topics = StreamTopics.declare(app, settings)
    tables = StreamTables.declare(app, settings)
    dead_letters = DeadLetters(topics.dead_letter)
    quality = QualityMonitor(stream.quality_window_s, stream.quality_min_records)
    drift = DriftMonitor.from_settings(settings)
    alerts = AlertSender(topics.alerts, publisher)
    clean = CleanAgent(
        topics, tables.dedup, dead_letters, quality, CleaningConfig.from_settings(settings), tagger
    )
    prices = PriceAgent(topics.prices, dead_letters, publisher)
    ranker = ReviewRanker(CoinShifts(publisher.latest_trends))
    broker_check = broker_up or (lambda: broker_ready(settings, timeout_s=3.0))
    score = ScoreAgent(
        stream, topics, tables, dead_letters, holder, publisher, drift, review=ranker, broker_up=broker_check
    )
    count = CountAgent(stream, topics.counts, tables, dead_letters, publisher)
    resolver: Resolver | None = challenger_resolver
    if challenger is None:
        challenger = ModelHolder.from_settings(
            settings, challenger_uri(settings), child_process=stream.scoring_process
        )
        resolver = registry_resolver(settings)
    shadow = ShadowAgent(
        settings,
        topics,
        dead_letters,
        challenger,
        publisher,
        ranker,
        resolver=resolver,
        champion=holder,
        mlflow_log=registry_mlflow_logger(settings),
    )
    parts = WorkerParts(
        topics=topics,
        tables=tables,
        clean=clean,
        score=score,
        count=count,
        shadow=shadow,
        prices=prices,
        lag=LagWatch(
            app,
            [clean, score, count],
            holder,
            stall_timeout_s=stream.stall_timeout_s,
            on_stall=on_stall,
            broker_up=broker_check,
        ),
        quality=QualityCheck(quality, publisher, alerts),
        drift=DriftCheck(drift, alerts),
        heartbeat=Heartbeat(settings),
        holder=holder,
        publisher=publisher,
    )
    # agents first, then the timers: model_poll (score), challenger_poll and shadow_mlflow
    # (shadow), consumer_lag, data_quality, model_drift, heartbeat
    for part in (
        parts.clean,
        parts.score,
        parts.count,
        parts.shadow,
        parts.prices,
        parts.lag,
        parts.quality,
        parts.drift,
        parts.heartbeat,
    ):
        part.register(app)
    register_views(app, holder)

    async def close_parts(app: faust.App, **kwargs: Any) -> None:
        await parts.close()

    app.on_before_shutdown.connect(close_parts)  # type: ignore[arg-type]
    app.parts = parts
    return app
