"""Prometheus metrics of the Spark trend job, served on ``settings.spark.metrics_host``:
``metrics_port`` (loopback by default; 0.0.0.0 in a container, where Prometheus scrapes it
over the internal Compose network)."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)


class SparkMetrics:
    """Batch counters updated by the sink and query progress fed by a StreamingQueryListener."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.batches = Counter("cryptopulse_spark_batches_total", "Micro-batches written", registry=r)
        self.rows = Counter(
            "cryptopulse_spark_rows_total", "Rows written", ["kind"], registry=r
        )  # kind: aggregates|trends
        self.batch_duration = Histogram(
            "cryptopulse_spark_batch_duration_seconds",
            "foreachBatch duration (collect, merge, Redis, lake)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.sink_retries = Counter(
            "cryptopulse_spark_sink_retries_total",
            "Micro-batch writes retried because Redis was unreachable",
            registry=r,
        )
        self.last_batch = Gauge(
            "cryptopulse_spark_last_batch_timestamp_seconds",
            "Unix time of the last written batch",
            registry=r,
        )
        self.last_batch_id = Gauge(
            "cryptopulse_spark_last_batch_id", "Id of the last written batch", registry=r
        )
        self.input_rate = Gauge(
            "cryptopulse_spark_input_rows_per_second",
            "Input rows/s of the last progress",
            ["query"],
            registry=r,
        )
        self.processed_rate = Gauge(
            "cryptopulse_spark_processed_rows_per_second",
            "Processed rows/s of the last progress",
            ["query"],
            registry=r,
        )
        self.input_rows = Counter(
            "cryptopulse_spark_input_rows_total", "Input rows read from Kafka", ["query"], registry=r
        )
        self.watermark = Gauge(
            "cryptopulse_spark_watermark_timestamp_seconds", "Event-time watermark", ["query"], registry=r
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)
        log.info("spark metrics served", extra={"host": host, "port": port})

    def on_progress(self, progress: Any) -> None:
        """Record one ``StreamingQueryProgress`` (from the listener or ``query.lastProgress``)."""
        name = str(getattr(progress, "name", None) or "query")
        self.input_rate.labels(name).set(float(getattr(progress, "inputRowsPerSecond", 0.0) or 0.0))
        self.processed_rate.labels(name).set(float(getattr(progress, "processedRowsPerSecond", 0.0) or 0.0))
        self.input_rows.labels(name).inc(int(getattr(progress, "numInputRows", 0) or 0))
        event_time = getattr(progress, "eventTime", None) or {}
        watermark = event_time.get("watermark") if isinstance(event_time, dict) else None
        if watermark:
            from datetime import datetime

            self.watermark.labels(name).set(
                datetime.fromisoformat(watermark.replace("Z", "+00:00")).timestamp()
            )


def progress_listener(metrics: SparkMetrics) -> Any:
    """A StreamingQueryListener that forwards progress events to ``metrics``."""
    from pyspark.sql.streaming import StreamingQueryListener

    class _Listener(StreamingQueryListener):
        def onQueryStarted(self, event: Any) -> None:
            log.info("query started", extra={"query": event.name, "id": str(event.id)})

        def onQueryProgress(self, event: Any) -> None:
            try:
                metrics.on_progress(event.progress)
            except Exception:  # metrics must never kill the query
                log.exception("progress metrics failed")

        def onQueryIdle(self, event: Any) -> None:
            return None

        def onQueryTerminated(self, event: Any) -> None:
            log.info("query terminated", extra={"id": str(event.id), "exception": event.exception})

    return _Listener()
