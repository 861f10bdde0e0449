"""The alerting service: the alerts topic in, signed webhooks and the live SSE channel out.

One small process, supervised by ``cryptopulse up`` like the other stages:

* a consumer in its own group reads the alerts topic; each alert is published on the
  ``live:alerts`` Redis channel (SSE ``events=alert``), listed in ``alerts:latest`` once
  (``/v1/alerts``), and delivered to every matching subscription (:mod:`.delivery`);
* its offset is committed only after every delivery of that alert has succeeded or been
  dead-lettered, so an alert read before a crash or restart is read again (a delivery
  already done is remembered in Redis and not sent twice);
* a small HTTP server on ``alerting.port`` serves ``/metrics``, ``/healthz`` (503 until the
  consumer has its partitions) and ``POST /alertmanager``, Alertmanager's webhook receiver,
  which publishes the CryptoPulse alerts among Prometheus's onto the alerts topic.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import redis
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from alerting.alertmanager import convert
from alerting.delivery import Deliverer, DeliveryResult, delivery_id
from alerting.subscriptions import load_subscriptions
from core.kafka import DeliveryError, EventProducer, admin_client, decode_key
from core.settings import Settings
from schemas.events import Alert, DeadLetter
from schemas.redis_keys import ALERT_MEMORY_S, RedisKeys
from schemas.topics import ALERTS, DEAD_LETTER
from views import RedisViewWriter

log = structlog.get_logger(__name__)

COMPONENT = "alerting"
MAX_BODY_BYTES = 1 << 20
"""Largest Alertmanager notification accepted (a group of hundreds of alerts is ~100 KiB)."""
RETRY_PAUSE_S = 2.0
"""Wait before trying an alert again when Redis or Kafka is away."""


@dataclass
class Metrics:
    """The service's Prometheus metrics, in a registry of its own (tests build several)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.deliveries = Counter(
            "cryptopulse_alerting_deliveries_total",
            "Webhook deliveries by outcome (delivered, dead_lettered) and failed attempts (attempt_failed)",
            ["outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "cryptopulse_alerting_delivery_seconds",
            "From an alert's first delivery attempt to its outcome",
            ["outcome"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.alerts = Counter(
            "cryptopulse_alerting_alerts_total",
            "Records read from the alerts topic (processed, invalid)",
            ["result"],
            registry=r,
        )
        self.alertmanager = Counter(
            "cryptopulse_alerting_alertmanager_alerts_total",
            "Alertmanager alerts received (published, duplicate, or the reason they were skipped)",
            ["result"],
            registry=r,
        )
        self.invalid_subscriptions = Counter(
            "cryptopulse_alerting_invalid_subscriptions_total",
            "Stored subscriptions that could not be read (skipped)",
            registry=r,
        )
        self.retries = Counter(
            "cryptopulse_alerting_dependency_retries_total",
            "Alerts tried again because a dependency was away",
            ["dependency"],
            registry=r,
        )
        self.last_alert = Gauge(
            "cryptopulse_alerting_last_alert_timestamp_seconds",
            "Unix time the last alert was processed",
            registry=r,
        )


class AlertingService:
    """Consumer, deliverer and HTTP receiver of one home. ``serve()`` runs until a signal."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        deliverer: Deliverer | None = None,
        start: str = "end",
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.stop = threading.Event()
        self.deliverer = deliverer or Deliverer(settings.alerting, stop=self.stop)
        self.start = start
        """Where a new consumer group starts: ``end`` (alerts from now on) or ``beginning``."""
        self.keys = RedisKeys(settings.redis.key_prefix)
        self.redis = redis.Redis.from_url(settings.redis.dsn, socket_timeout=5, socket_connect_timeout=3)
        self.views = RedisViewWriter(self.redis, settings.redis.key_prefix)
        self.topic = ALERTS.name(settings)
        self.dead_letter_topic = DEAD_LETTER.name(settings)
        self._dead_letters = EventProducer(settings, component=COMPONENT)
        self._receiver_producer = EventProducer(settings, component=COMPONENT)
        self._receiver_lock = threading.Lock()
        self.ready = threading.Event()
        self._initial: list[TopicPartition] = []
        self._pool = ThreadPoolExecutor(settings.alerting.concurrency, thread_name_prefix="webhook")
        self._http: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Signal handler: sets the stop event (retries waiting on it wake at once)."""
        self.stop.set()

    def start_http(self, host: str | None = None, port: int | None = None) -> int:
        """Serve /metrics, /healthz and POST /alertmanager in a background thread; the port."""
        service = self

        class Handler(_Handler):
            owner = service

        address = (host or self.settings.alerting.host, self.settings.alerting.port if port is None else port)
        self._http = ThreadingHTTPServer(address, Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, name="alerting-http", daemon=True).start()
        return int(self._http.server_address[1])

    def serve(self, *, host: str | None = None, port: int | None = None) -> None:
        """The supervised process: HTTP in a thread, the consumer loop here, until SIGTERM."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.request_stop)
        bound = self.start_http(host, port)
        log.info(
            "alerting service started",
            port=bound,
            topic=self.topic,
            max_attempts=self.settings.alerting.max_attempts,
            backoff_s=self.settings.alerting.backoff_s,
        )
        try:
            self.run()
        finally:
            self.close()
        log.info("alerting service stopped")

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.deliverer.close()
        for producer in (self._dead_letters, self._receiver_producer):
            try:
                producer.flush(10)
            except DeliveryError as exc:
                log.error("records not flushed at stop", error=str(exc))
        self.redis.close()

    # -- consuming ---------------------------------------------------------------------

    def _consumer(self) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self.settings.kafka.bootstrap,
                "group.id": f"{self.settings.kafka.topic_prefix}.alerting",
                "enable.auto.commit": False,
                "auto.offset.reset": "latest" if self.start == "end" else "earliest",
                "enable.partition.eof": False,
                "topic.metadata.refresh.interval.ms": 10_000,
                "log_level": 3,
            }
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """A partition without a committed offset starts at ``self.start``, and that position
        is committed at once (next poll), so an alert sent after readiness is never skipped."""
        committed = partitions
        while not self.stop.is_set():
            try:
                committed = consumer.committed(partitions, timeout=10)
                initial = []
                for tp in committed:
                    if tp.offset < 0:
                        low, high = consumer.get_watermark_offsets(tp, timeout=10)
                        tp.offset = high if self.start == "end" else low
                        initial.append(TopicPartition(tp.topic, tp.partition, tp.offset))
                self._initial = initial
                break
            except KafkaException as exc:  # a new topic's leader not elected yet, a broker away
                # Never guess a position (a guessed "latest" could skip an alert): ask again.
                log.warning("alerts offsets not readable yet; retrying", error=str(exc))
                self.stop.wait(0.5)
        consumer.assign(committed)
        log.info("alerts partitions assigned", offsets={tp.partition: tp.offset for tp in committed})
        if not self._initial:
            self.ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.ready.clear()

    def run(self) -> None:
        """Consume until stopped; an alert interrupted by the stop stays uncommitted."""
        if not self._topic_exists():
            return
        consumer = self._consumer()
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self.stop.is_set():
                msg = consumer.poll(0.5)
                if self._initial:
                    if not self._until_done(
                        lambda: consumer.commit(offsets=self._initial, asynchronous=False), "kafka"
                    ):
                        break
                    self._initial = []
                    self.ready.set()
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("kafka error on the alerts topic", error=str(error))
                    continue
                if not self.process(msg):
                    break  # stopping: the alert is read again after the restart
                if not self._until_done(
                    lambda m=msg: consumer.commit(message=m, asynchronous=False), "kafka"
                ):
                    break
        finally:
            self.ready.clear()
            consumer.close()

    def _topic_exists(self) -> bool:
        """Wait for the alerts topic (``cryptopulse up`` creates the catalog); False if stopped."""
        while not self.stop.is_set():
            try:
                if self.topic in admin_client(self.settings, quiet=True).list_topics(timeout=5).topics:
                    return True
                log.warning("alerts topic missing; waiting for it", topic=self.topic)
            except KafkaException as exc:
                log.warning("Kafka unavailable; waiting", error=str(exc))
            self.stop.wait(RETRY_PAUSE_S)
        return False

    def process(self, msg: Message) -> bool:
        """Everything one record needs; True when done (its offset may be committed)."""
        payload = msg.value() or b""
        try:
            alert = ALERTS.decode(payload)
        except ValueError as exc:
            self.metrics.alerts.labels(result="invalid").inc()
            record = DeadLetter.for_payload(
                payload,
                reason="invalid_schema",
                detail=str(exc),
                component=COMPONENT,
                original_topic=msg.topic(),
                original_partition=msg.partition(),
                original_offset=msg.offset(),
                original_key=decode_key(msg.key()),
            )
            return self._until_done(lambda: self._send_dead_letters([record]), "kafka")
        assert isinstance(alert, Alert)  # nosec B101 # narrowing: the topic's only schema
        if not self._until_done(lambda: self._show(alert), "redis"):
            return False
        results: list[DeliveryResult] = []
        if not self._until_done(lambda: results.extend(self._deliver(alert)), "redis"):
            return False
        if any(r.outcome == "interrupted" for r in results):
            return False
        dead = [self._dead_letter(alert, msg, r) for r in results if r.outcome == "dead_lettered"]
        if dead and not self._until_done(lambda: self._send_dead_letters(dead), "kafka"):
            return False
        self.metrics.alerts.labels(result="processed").inc()
        self.metrics.last_alert.set(time.time())
        return True

    def _until_done(self, step: Any, dependency: str) -> bool:
        """Run ``step`` until it does not fail on a dependency away; False when stopped."""
        while not self.stop.is_set():
            try:
                step()
                return True
            except (redis.RedisError, DeliveryError, KafkaException) as exc:
                self.metrics.retries.labels(dependency=dependency).inc()
                log.warning("dependency away; alert retried", dependency=dependency, error=str(exc)[:300])
                self.stop.wait(RETRY_PAUSE_S)
        return False

    def _show(self, alert: Alert) -> None:
        """The live channel (SSE) and ``alerts:latest`` (once per alert id)."""
        self.views.show_alert(alert)

    def _deliver(self, alert: Alert) -> list[DeliveryResult]:
        """Deliver to every matching subscription not yet served, in parallel."""
        loaded = load_subscriptions(self.redis, self.keys)
        for sid in loaded.invalid:
            self.metrics.invalid_subscriptions.inc()
            log.error("unreadable alert subscription skipped", subscription=sid)
        wanted = [s for s in loaded.subscriptions if s.matches(alert)]
        pending = [
            s for s in wanted if not self.redis.exists(self.keys.alert_delivered(delivery_id(alert, s)))
        ]
        if not pending:
            return []
        results = list(self._pool.map(lambda s: self.deliverer.deliver(alert, s), pending))
        for result in results:
            if result.outcome == "interrupted":
                continue
            self.metrics.deliveries.labels(outcome=result.outcome).inc()
            self.metrics.latency.labels(outcome=result.outcome).observe(result.seconds)
            failed = result.attempts - (1 if result.outcome == "delivered" else 0)
            if failed:
                self.metrics.deliveries.labels(outcome="attempt_failed").inc(failed)
            if result.outcome == "delivered":
                try:
                    self.redis.set(self.keys.alert_delivered(result.delivery_id), "1", ex=ALERT_MEMORY_S)
                except redis.RedisError as exc:  # it was delivered; a restart may send it again
                    log.warning("delivery not remembered", delivery=result.delivery_id, error=str(exc))
        return results

    def _dead_letter(self, alert: Alert, msg: Message, result: DeliveryResult) -> DeadLetter:
        log.error(
            "webhook dead-lettered",
            subscription=result.subscription_id,
            delivery=result.delivery_id,
            alert=alert.source_id,
            attempts=result.attempts,
            error=result.error,
        )
        return DeadLetter.for_payload(
            result.body,
            reason=result.reason,
            detail=f"subscription {result.subscription_id}: {result.attempts} attempts; last: {result.error}",
            component=COMPONENT,
            source_id=result.delivery_id,
            original_topic=msg.topic(),
            original_partition=msg.partition(),
            original_offset=msg.offset(),
            original_key=result.subscription_id,
        )

    def _send_dead_letters(self, records: list[DeadLetter]) -> None:
        for record in records:
            self._dead_letters.send(self.dead_letter_topic, record)
        self._dead_letters.flush(30)

    # -- Alertmanager receiver -----------------------------------------------------------

    def receive_alertmanager(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) for one notification; 503 makes Alertmanager retry."""
        try:
            converted = convert(json.loads(body))
        except ValueError as exc:
            self.metrics.alertmanager.labels(result="invalid").inc()
            return 400, {"error": str(exc)[:300]}
        for skipped in converted.skipped:
            self.metrics.alertmanager.labels(result=skipped["reason"]).inc()
            log.info("alertmanager alert skipped", **skipped)
        fresh = []
        for alert in converted.alerts:
            try:
                seen = self.views.alert_raised(alert)
            except redis.RedisError:
                seen = False  # publish: the consumer lists it once Redis is back
            if seen:
                self.metrics.alertmanager.labels(result="duplicate").inc()
            else:
                fresh.append(alert)
        with self._receiver_lock:
            try:
                for alert in fresh:
                    self._receiver_producer.send(self.topic, alert, key=ALERTS.key_of(alert))
                self._receiver_producer.flush(15)
            except DeliveryError as exc:
                log.warning("alertmanager alerts not published", error=str(exc)[:300])
                return 503, {"error": "Kafka unavailable; retry"}
        self.metrics.alertmanager.labels(result="published").inc(len(fresh))
        for alert in fresh:
            log.info("alertmanager alert published", alert=alert.source_id, kind=alert.kind)
        return 200, {
            "published": [a.source_id for a in fresh],
            "duplicates": len(converted.alerts) - len(fresh),
            "skipped": converted.skipped,
        }


class _Handler(BaseHTTPRequestHandler):
    """The service's HTTP endpoints (stdlib server: three routes, no framework needed)."""

    owner: AlertingService
    server_version = "cryptopulse-alerting"

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib names it so
        """Requests are not logged one by one (the metrics count them)."""

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, generate_latest(self.owner.metrics.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ready = self.owner.ready.is_set()
            self._answer(200 if ready else 503, json.dumps({"consumer_ready": ready}).encode())
        else:
            self._answer(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/alertmanager":
            self._answer(404, b'{"error": "not found"}')
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._answer(413, b'{"error": "body missing or over 1 MiB"}')
            return
        status, answer = self.owner.receive_alertmanager(self.rfile.read(length))
        self._answer(status, json.dumps(answer).encode())
