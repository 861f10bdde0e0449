"""Prometheus metrics of every producer, labelled by source.

One process usually runs one source; the labels still let a single scrape config
cover all of them. The HTTP endpoint listens on ``settings.producer.metrics_host``:
``metrics_port``: loopback by default, 0.0.0.0 in a container so Prometheus on the
internal Compose network can scrape it.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

PRODUCED = Counter(
    "cryptopulse_producer_records_produced_total",
    "Records acknowledged by Kafka (after a successful flush)",
    ["source", "topic"],
)
FAILED = Counter(
    "cryptopulse_producer_failures_total",
    "Fetch, validation or delivery failures",
    ["source", "reason"],
)
SKIPPED = Counter(
    "cryptopulse_producer_skipped_total",
    "Items deliberately not produced (removed, deleted, duplicate, unchanged)",
    ["source", "reason"],
)
FETCH_LATENCY = Histogram(
    "cryptopulse_producer_fetch_seconds",
    "Latency of one upstream HTTP request, retries excluded",
    ["source", "endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LAST_SUCCESS = Gauge(
    "cryptopulse_producer_last_success_timestamp_seconds",
    "Unix time of the last cycle whose records were all flushed",
    ["source"],
)

_served: set[int] = set()


def serve_metrics(port: int, host: str = "127.0.0.1") -> bool:
    """Start the metrics endpoint once per port; a busy port is logged, not fatal."""
    if port in _served:
        return True
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("metrics port unavailable", extra={"port": port, "error": str(exc)})
        return False
    _served.add(port)
    log.info("metrics served", extra={"host": host, "port": port})
    return True
