"""Prometheus metrics of the API; multi-process aware (uvicorn workers share one /metrics).

When ``PROMETHEUS_MULTIPROC_DIR`` is set (``cryptopulse api`` sets it for workers > 1)
each worker writes its samples there and /metrics aggregates them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REQUESTS = Counter("cryptopulse_api_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "cryptopulse_api_request_duration_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SCORED_TEXTS = Counter("cryptopulse_api_scored_texts_total", "texts scored through POST /v1/score")
RATE_LIMITED = Counter("cryptopulse_api_rate_limited_total", "requests answered 429")
AUTH_FAILURES = Counter("cryptopulse_api_auth_failures_total", "requests answered 401")
SSE_CLIENTS = Gauge("cryptopulse_api_sse_clients", "open /v1/stream connections", multiprocess_mode="livesum")


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of every worker in multi-process mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
