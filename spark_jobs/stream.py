"""The streaming trend job: Kafka (scored posts + price ticks) -> windows -> Redis + lake.

Two queries share one SparkSession:

* ``trends``: parse, de-duplicate within the watermark, assign event-time windows
  (1m, 5m, 1h, 1d tumbling; 1h sliding every 5m) and aggregate in *update* mode. Each
  micro-batch goes to :class:`TrendSink` (foreachBatch), which merges the updated
  aggregates into Redis, finishes the affected windows, writes the views and the
  trend lake. Late events inside the watermark update their window; later ones are
  dropped by Spark's state store. It runs every ``spark.trigger_interval`` (1 s): a
  scored post reaches the views within about two seconds.
* ``archive``: the typed events appended to the events lake (Spark file sink), which
  the backfill can read instead of Kafka. It runs every ``spark.lake_interval`` (1 min),
  and the sink gathers trend rows for the trend lake just as long
  (:class:`spark_jobs.lake.TrendLakeBuffer`), so a fast trigger does not mean many
  small files.

Both checkpoint under ``settings.home / "checkpoints"``; a restart resumes at the
offsets the last committed batch ended at, and a replayed batch rewrites exactly the
same Redis values (and at most repeats identical rows in the trend lake).

When Redis is unreachable the sink retries the micro-batch's writes with backoff for
``settings.spark.sink_retry_s`` (a Redis restart or failover costs no restart of Spark).
Past that the batch fails, the query stops with it and ``run_stream`` raises
:class:`StreamFailed`, so ``cryptopulse spark stream`` exits non-zero and its supervisor
(Docker's restart policy, supervisord) starts it again: it resumes from the checkpoint,
where the failed batch was never committed, and replays that batch.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from schemas.topics import ALERTS, TRENDS
from spark_jobs.aggregations import (
    add_cross_window_features,
    aggregate_windows,
    assign_windows,
    build_trend_frame,
    interval_ms,
    measure_rows,
    to_trend_windows,
)
from spark_jobs.alerts import trend_alerts
from spark_jobs.inputs import EVENT_COLUMNS, kafka_events, kafka_stream, parse_events
from spark_jobs.lake import TrendLakeBuffer, events_path, trends_path
from spark_jobs.metrics import SparkMetrics
from spark_jobs.session import checkpoint_dir, serves_connect
from spark_jobs.sink_redis import TrendStore, rows_to_records

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger(__name__)

_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 10.0


class StreamFailed(RuntimeError):
    """A streaming query stopped on its own (a failed micro-batch): exit and be restarted."""


def _redis_unreachable(exc: BaseException) -> bool:
    """Connection refused/reset, timeouts, a Redis still loading its data: worth waiting for."""
    import redis

    return isinstance(exc, redis.ConnectionError | redis.TimeoutError)


def redis_client(settings: Settings) -> Any:
    import redis

    return redis.Redis.from_url(settings.redis.dsn, decode_responses=True)


@dataclass
class BatchResult:
    batch_id: int
    aggregates: int
    windows: int
    trends: int
    seconds: float


class TrendSink:
    """foreachBatch target: merge aggregates, finish windows, write Redis views and the lake.

    Every write is keyed by what it describes (window, series, batch file name), so a
    micro-batch replayed after a crash leaves Redis and the lake as they were.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: Any | None = None,
        metrics: SparkMetrics | None = None,
        run_token: str = "stream",
        publish: bool = True,
        trends_topic: bool | None = None,
    ) -> None:
        self.settings = settings
        self.store = TrendStore(
            client or redis_client(settings),
            settings.redis.key_prefix,
            trailing=settings.spark.trailing_windows,
        )
        self.metrics = metrics or SparkMetrics()
        self.run_token = run_token
        self.publish = publish
        self.trends_topic = settings.spark.trends_topic if trends_topic is None else trends_topic
        self.lake = TrendLakeBuffer(
            trends_path(settings),
            checkpoint_dir(settings) / "trends" / f"lake-pending-{run_token}",
            run_token,
            interval_ms(settings.spark.lake_interval) / 1000,
        )
        self.last: BatchResult | None = None
        self._producer: Any = None
        self.stopping = threading.Event()
        """Set on shutdown: a batch waiting for Redis gives up at once instead of holding the stop."""

    @property
    def producer(self) -> Any:
        """Kafka producer for the trends and alerts topics, created on first use."""
        if self._producer is None:
            from core.kafka import EventProducer

            self._producer = EventProducer(self.settings, component="spark.stream")
        return self._producer

    def publish_trends(self, trends: Any) -> int:
        """Every updated window (all sources) to the trends topic, for Kafka subscribers.

        Keyed by coin:window:source, so one series stays ordered in one partition and
        compaction keeps its latest window; a replayed micro-batch re-sends the same values.
        """
        if not self.trends_topic:
            return 0
        topic = TRENDS.name(self.settings)
        windows = to_trend_windows(trends)
        for window in windows:
            self.producer.send(topic, window, key=TRENDS.key_of(window))
        self.producer.flush()
        return len(windows)

    def raise_alerts(self, trends: Any) -> int:
        """Publish new sentiment-shift and volume-spike alerts to the alerts topic, then record
        them in Redis.

        Kafka first: a crash in between re-sends the alert (at-least-once, same
        ``source_id``) rather than recording one that never reached the topic.
        """
        overall = trends[trends["source"] == "all"]
        alerts = trend_alerts(to_trend_windows(overall), self.settings.spark)
        fresh = [a for a in alerts if not self.store.views.alert_raised(a)]
        if not fresh:
            return 0
        topic = ALERTS.name(self.settings)
        for alert in fresh:
            self.producer.send(topic, alert, key=ALERTS.key_of(alert))
        self.producer.flush()
        for alert in fresh:
            self.store.views.raise_alert_once(alert)
        log.info("alerts raised", extra={"alerts": [a.source_id for a in fresh]})
        return len(fresh)

    def close(self) -> None:
        """Write the trend rows still gathered for the lake (after the queries stopped)."""
        self.lake.flush()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        self.process_retrying(rows_to_records(batch.collect()), batch_id)

    def process_retrying(self, records: list[dict[str, Any]], batch_id: int) -> BatchResult:
        """:meth:`process`, again with backoff while Redis is unreachable.

        Safe to repeat because every write is idempotent and a failed flush leaves nothing
        queued. After ``spark.sink_retry_s`` (or on shutdown) the error propagates: Spark
        fails the batch without committing it, so a restart replays it from the checkpoint.
        """
        deadline = time.monotonic() + self.settings.spark.sink_retry_s
        delay = _BACKOFF_FIRST_S
        attempt = 1
        while True:
            try:
                return self.process(records, batch_id)
            except Exception as exc:
                self.store.views.discard()
                left = deadline - time.monotonic()
                if not _redis_unreachable(exc) or left <= 0 or self.stopping.is_set():
                    log.error(
                        "trend batch failed",
                        extra={"batch_id": batch_id, "attempts": attempt, "error": repr(exc)},
                    )
                    raise
                wait = min(delay, left)
                log.warning(
                    "redis unreachable, retrying trend batch",
                    extra={
                        "batch_id": batch_id,
                        "attempt": attempt,
                        "retry_in_s": round(wait, 2),
                        "error": str(exc),
                    },
                )
                self.metrics.sink_retries.inc()
                if self.stopping.wait(wait):
                    raise
                delay = min(delay * 2, _BACKOFF_MAX_S)
                attempt += 1

    def process(self, records: list[dict[str, Any]], batch_id: int) -> BatchResult:
        started = time.perf_counter()
        touched = self.store.upsert_components(records)
        trends = build_trend_frame(self.store.load_components(touched))
        if not trends.empty:
            history = self.store.load_history(trends)
            trends = add_cross_window_features(
                trends,
                history,
                self.settings.spark.trailing_windows,
                max_lag=self.settings.spark.lead_lag_max_windows,
            )
            self.store.write_trends(trends, publish=self.publish)
            self.publish_trends(trends)
            self.raise_alerts(trends)
            self.lake.add(trends, batch_id)
        elapsed = time.perf_counter() - started
        result = BatchResult(batch_id, len(records), len(touched), len(trends), elapsed)
        self.metrics.batches.inc()
        self.metrics.rows.labels("aggregates").inc(len(records))
        self.metrics.rows.labels("trends").inc(len(trends))
        self.metrics.batch_duration.observe(elapsed)
        self.metrics.last_batch.set(time.time())
        self.metrics.last_batch_id.set(batch_id)
        self.last = result
        log.info(
            "trend batch written",
            extra={
                "batch_id": batch_id,
                "aggregates": len(records),
                "windows": len(touched),
                "trends": len(trends),
                "seconds": round(elapsed, 3),
            },
        )
        return result


def trend_aggregates(events: DataFrame, settings: Settings) -> DataFrame:
    """Typed events -> watermarked, de-duplicated, windowed aggregates (streaming)."""
    watermarked = events.withWatermark("event_time", settings.spark.watermark).dropDuplicatesWithinWatermark(
        ["kind", "source_id"]
    )
    delay = interval_ms(settings.spark.watermark)
    return aggregate_windows(assign_windows(measure_rows(watermarked), watermark_delay_ms=delay))


def _run_token(folder: Path) -> str:
    """Stable per checkpoint: names the lake files of this stream so a new checkpoint never
    overwrites an old one's files, while a restart of the same checkpoint rewrites its own."""
    folder.mkdir(parents=True, exist_ok=True)
    token_file = folder / "lake-token"
    if not token_file.exists():
        token_file.write_text(uuid.uuid4().hex[:12], "utf-8")
    return token_file.read_text("utf-8").strip()


@dataclass
class StreamJob:
    trends: StreamingQuery
    archive: StreamingQuery | None
    sink: TrendSink

    def process_all_available(self) -> None:
        self.trends.processAllAvailable()
        if self.archive is not None:
            self.archive.processAllAvailable()

    def stop(self) -> None:
        self.sink.stopping.set()
        for query in (self.trends, self.archive):
            if query is not None and query.isActive:
                query.stop()
        self.sink.close()

    def await_termination(self) -> None:
        for query in (self.trends, self.archive):
            if query is not None:
                query.awaitTermination()
        self.sink.close()


def start_stream(
    spark: SparkSession,
    settings: Settings,
    *,
    available_now: bool = False,
    archive: bool = True,
    metrics: SparkMetrics | None = None,
    client: Any | None = None,
    publish: bool = True,
) -> StreamJob:
    """Start the trend (and archive) queries; ``available_now`` processes the backlog and stops."""
    checkpoints = checkpoint_dir(settings)
    events = parse_events(kafka_events(kafka_stream(spark, settings), settings))
    sink = TrendSink(
        settings,
        client=client,
        metrics=metrics,
        run_token=_run_token(checkpoints / "trends"),
        publish=publish,
    )
    writer = (
        trend_aggregates(events, settings)
        .writeStream.queryName(f"trends-{settings.kafka.topic_prefix}")
        .outputMode("update")
        .foreachBatch(sink)
        .option("checkpointLocation", str(checkpoints / "trends"))
    )
    writer = (
        writer.trigger(availableNow=True)
        if available_now
        else writer.trigger(processingTime=settings.spark.trigger_interval)
    )
    trends_query = writer.start()
    archive_query = None
    if archive:
        from pyspark.sql import functions as F

        archive_writer = (
            events.select(
                "kind",
                F.date_format("event_time", "yyyy-MM-dd").alias("date"),
                *EVENT_COLUMNS,
            )
            .writeStream.queryName(f"archive-{settings.kafka.topic_prefix}")
            .format("parquet")
            .option("path", str(events_path(settings)))
            .option("checkpointLocation", str(checkpoints / "archive"))
            .option("compression", "zstd")
            .partitionBy("kind", "date")
            .outputMode("append")
        )
        archive_writer = (
            archive_writer.trigger(availableNow=True)
            if available_now
            else archive_writer.trigger(processingTime=settings.spark.lake_interval)
        )
        archive_query = archive_writer.start()
    log.info(
        "streaming started",
        extra={
            "checkpoints": str(checkpoints),
            "lake": str(trends_path(settings).parent),
            "available_now": available_now,
        },
    )
    return StreamJob(trends_query, archive_query, sink)


def run_stream(settings: Settings, *, master: str | None = None, serve_metrics: bool = True) -> None:
    """``cryptopulse spark stream``: run until interrupted (SIGINT/SIGTERM stop the queries).

    Raises :class:`StreamFailed` when a query stops on its own (a micro-batch failed past
    its retries): the process must exit non-zero so its supervisor restarts it from the
    checkpoint, rather than linger with one query dead.
    """
    from spark_jobs.session import build_spark, read_connect_token, withdraw_connect_token

    spark = build_spark(settings, master=master, connect_server=True)
    # the token build_spark just published: only the application that bound the port writes one
    token = read_connect_token(settings) if serves_connect(spark) else None
    try:
        _run(spark, settings, serve_metrics=serve_metrics)
    finally:
        withdraw_connect_token(settings, token)  # backfills stop trying this endpoint
        spark.stop()


def _run(spark: SparkSession, settings: Settings, *, serve_metrics: bool) -> None:
    """The body of :func:`run_stream` once the application is up (which stops it after)."""
    from spark_jobs.metrics import progress_listener
    from spark_jobs.session import is_local

    metrics = SparkMetrics()
    if serve_metrics:
        metrics.serve(settings.spark.metrics_port, settings.spark.metrics_host)
    spark.streams.addListener(progress_listener(metrics))
    job = start_stream(spark, settings, metrics=metrics)
    stopping = threading.Event()
    # The warm-up writes its scratch events to a driver path: local masters only.
    local = is_local(spark.sparkContext.master or "")
    if serves_connect(spark) and settings.spark.backfill_warm_up_events and local:
        warm = threading.Thread(
            target=warm_up_for_backfills, args=(spark, settings, stopping), name="backfill-warm-up"
        )
        warm.daemon = True
        warm.start()
    # Our own SIGINT/SIGTERM handling: PySpark's default SIGINT handler cancels jobs from
    # inside a py4j call; stopping the queries between polls ends the micro-batch cleanly.

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("signal received, stopping streaming queries", extra={"signal": signum})
        stopping.set()
        job.sink.stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    try:
        failure = wait_for_failure(job, stopping)
    finally:
        stopping.set()  # also ends a warm-up that has not begun, and quiets one that has
        job.stop()
    if failure is not None:
        raise StreamFailed(failure)


WARM_UP_DELAY_S = 60.0
"""The backfill warm-up waits this long after the queries start: not to compete with the
first micro-batches (and, on a first `cryptopulse up`, with everything else starting)."""


def warm_up_for_backfills(spark: SparkSession, settings: Settings, stopping: threading.Event) -> None:
    """Run :func:`spark_jobs.backfill.warm_up` ``spark.backfill_warm_up_runs`` times,
    ``WARM_UP_DELAY_S`` after the start: a backfill sent to this application then runs about
    twice as fast as in a fresh JVM. A failure is logged and changes nothing else."""
    from spark_jobs.backfill import warm_up

    if stopping.wait(WARM_UP_DELAY_S):
        return
    seconds = 0.0
    runs, events = settings.spark.backfill_warm_up_runs, settings.spark.backfill_warm_up_events
    try:
        for _ in range(runs):
            if stopping.is_set():
                return
            seconds += warm_up(spark, settings.cache_dir / "spark-tmp", events)
    except Exception as exc:
        if not stopping.is_set():
            log.warning("backfill warm-up failed", extra={"error": repr(exc)})
        return
    log.info(
        "backfill warm-up done",
        extra={"events": events, "runs": runs, "seconds": round(seconds, 1)},
    )


def wait_for_failure(job: StreamJob, stopping: threading.Event, poll_s: float = 1.0) -> str | None:
    """Block until ``stopping`` is set (None) or a query ends on its own (why it ended)."""
    while not stopping.is_set():
        for query in (job.trends, job.archive):
            if query is None or query.isActive:
                continue
            error = query.exception()
            first = (str(error).strip().splitlines() or ["?"])[0] if error else "without an error"
            reason = f"query {query.name} stopped: {first}"
            log.error(
                "streaming query stopped, exiting for a restart from the checkpoint", extra={"reason": reason}
            )
            return reason
        stopping.wait(poll_s)
    return None
