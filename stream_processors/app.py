"""The faust application: configuration only; agents, tables and views are registered
by :mod:`stream_processors.agents` and :mod:`stream_processors.views`.

Run it with ``cryptopulse worker`` or ``python -m stream_processors worker``. Settings
decide everything: broker, consumer group (``{topic_prefix}.{stream.app_id}``, so
test runs with their own topic prefix never share state), web port for /metrics,
and faust's state directory under ``settings.home / "faust"``.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT

from cryptopulse.settings import Settings, get_settings


class _FetchTunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread with the fetch batching of ``stream.fetch_*`` settings.

    faust hard-codes ``fetch_max_wait_ms=1500`` and leaves ``fetch_min_bytes`` at 1, so
    the broker answers every fetch as soon as one record is there: at a few hundred
    events/s that is a fetch request and a thread hand-off every few records. Letting the
    broker gather ``fetch_min_bytes`` (or wait ``fetch_max_wait_ms``) costs at most that
    wait in latency and saves CPU on both sides.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        app = self.consumer.app
        # aiokafka reads these when the consumer starts (it builds its Fetcher in start())
        consumer._fetch_min_bytes = getattr(app, "fetch_min_bytes", 1)
        consumer._fetch_max_wait_ms = getattr(app, "fetch_max_wait_ms", 500)
        return consumer


class _FetchTunedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _FetchTunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _FetchTunedTransport(faust_aiokafka.Transport):
    Consumer = _FetchTunedConsumer


class StreamApp(faust.App):
    """A faust app whose Kafka consumer batches fetches (see ``_FetchTunedConsumerThread``)."""

    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 500

    def _new_transport(self) -> TransportT:
        return _FetchTunedTransport(self.conf.broker_consumer, self)


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
        "web_enabled": True,
        "web_host": stream.web_host,
        "web_port": stream.web_port,
        "web_bind": stream.web_host,
        "web": "aiohttp://",
    }


def create_app(settings: Settings | None = None, **components: Any) -> faust.App:
    """Build a configured app with the pipeline's agents, tables, timers and views."""
    from stream_processors.agents import StreamPipeline
    from stream_processors.views import register_views

    settings = settings or get_settings()
    (settings.home / "faust").mkdir(parents=True, exist_ok=True)
    app = StreamApp(group_id(settings), **faust_config(settings))
    app.fetch_min_bytes = settings.stream.fetch_min_bytes
    app.fetch_max_wait_ms = settings.stream.fetch_max_wait_ms
    pipeline = StreamPipeline(app, settings, **components)
    register_views(app, pipeline)
    app.pipeline = pipeline  # type: ignore[attr-defined]
    return app
