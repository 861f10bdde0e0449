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
from faust.types import TransportT

from cryptopulse.settings import Settings, get_settings
from stream_processors.faust_ext import StreamTransport


class StreamApp(faust.App):
    """A faust app with the worker's consumer and table recovery (see :mod:`.faust_ext`)."""

    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 500

    def _new_transport(self) -> TransportT:
        return StreamTransport(self.conf.broker_consumer, self)


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
