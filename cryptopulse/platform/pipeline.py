"""CryptoPulse's own long-running processes, supervised exactly like the platform services.

Each runs a ``cryptopulse`` sub-command in its own process (so one crash takes down
one component), logs under ``settings.log_dir`` and is probed on its HTTP port.
"""

from __future__ import annotations

import sys

import httpx

from cryptopulse.platform.services import PLATFORM_SERVICES, Service


class _CliService(Service):
    """A ``cryptopulse`` sub-command with an HTTP readiness endpoint."""

    command: tuple[str, ...]
    probe_path: str = "/metrics"
    needs: tuple[str, ...] = ("kafka", "redis")

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "cryptopulse", *self.command]

    def env(self) -> dict[str, str]:
        return {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}{self.probe_path}", timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    def version(self) -> str:
        from core.version import __version__

        return __version__


class ReplayProducerService(_CliService):
    name = "producer"
    description = "Replay producer (bundled real texts + price random walk)"
    command = ("produce", "replay")

    @property
    def port(self) -> int:
        return self.settings.producer.metrics_port


class StreamWorkerService(_CliService):
    name = "worker"
    description = "faust-streaming worker: clean, validate, score"
    command = ("worker",)
    needs = ("kafka", "redis", "mlflow")  # it loads the champion at start
    stop_as_group = False  # faust flushes and commits before it stops its scoring child

    @property
    def port(self) -> int:
        return self.settings.stream.web_port


class SparkStreamingService(_CliService):
    name = "spark"
    description = "Spark Structured Streaming: trend windows to Redis and the lake"
    command = ("spark", "stream")
    start_secs = 20  # the driver's JVM and Kafka source take this long to fail on bad settings
    stop_as_group = False  # the driver stops its queries before its JVM may go

    @property
    def port(self) -> int:
        return self.settings.spark.metrics_port


class ApiService(_CliService):
    name = "api"
    description = "FastAPI over the Redis views"
    command = ("api",)
    needs = ("kafka", "redis", "mlflow")  # it loads the champion at start
    probe_path = "/healthz"

    @property
    def host(self) -> str:
        return self.settings.api.host

    @property
    def port(self) -> int:
        return self.settings.api.port


class DashboardService(_CliService):
    name = "dashboard"
    description = "Streamlit dashboard"
    command = ("dashboard",)
    probe_path = "/_stcore/health"

    @property
    def host(self) -> str:
        return self.settings.dashboard.host

    @property
    def port(self) -> int:
        return self.settings.dashboard.port


class RetrainService(_CliService):
    """The retraining scheduler (docs/learning-loop.md). It never trains on start: a fresh
    home records a baseline, and the schedule (weekly), feedback or drift starts a run."""

    name = "retrain"
    description = "Retraining scheduler: schedule, feedback and drift triggers; runs training in a child"
    command = ("retrain", "serve")
    needs = ("kafka", "redis", "mlflow")
    stop_as_group = False  # it cancels its training child (SIGTERM, then SIGKILL after 45 s) itself
    stop_timeout_s = 60

    @property
    def port(self) -> int:
        return self.settings.learning.orchestrator_metrics_port


class AlertDeliveryService(_CliService):
    """The alerting service (docs/alerts.md): alerts to subscribers' signed webhooks and the
    SSE channel; Alertmanager's webhook receiver. Ready once its consumer has its partition."""

    name = "alerting"
    description = "Alert delivery: signed webhooks to subscribers, Alertmanager receiver"
    command = ("alerting", "serve")
    probe_path = "/healthz"
    stop_timeout_s = 40  # a delivery in flight finishes (webhook timeout) before it commits

    @property
    def port(self) -> int:
        return self.settings.alerting.port


PIPELINE_SERVICES: tuple[type[Service], ...] = (
    StreamWorkerService,
    SparkStreamingService,
    ApiService,
    DashboardService,
    AlertDeliveryService,
    ReplayProducerService,
    RetrainService,
)
"""Start order: consumers before the producer, so the first replayed events are live."""

ALL_SERVICES: tuple[type[Service], ...] = (*PLATFORM_SERVICES, *PIPELINE_SERVICES)
