"""Agents, tables and timers of the stream worker.

Two agents, each a faust consumer of one stage:

* ``clean``: raw.reddit + raw.news -> clean.posts or deadletter, one outcome per record,
  de-duplicated by source id and content hash in a windowed table;
* ``score``: clean.posts -> scored.posts in micro-batches (``stream.take_events``), with
  the shared :class:`scoring.runtime.SentimentRuntime`, per-coin tumbling-window
  counters (1 and 5 minutes) mirrored to Redis, and live pub/sub.

Delivery is at-least-once (see docs/stream-processing.md): an input event is acked only
after its outputs were handed to the producer (see ``_send``), and faust flushes the
producer (waits for the broker's acks) before it commits offsets, so a crash replays,
never skips (faust's own recovery could skip at a restart: see ``faust_ext``). The score
agent waits for the broker's ack of a batch's scored records before it records their ids
in the ``scored`` table, so a replayed id found there is known to be delivered already and
is skipped: no second scoring and no double counting.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from typing import Any

import faust
import structlog
from faust.streams import _current_event  # set per event when updating tables from a batch
from faust.types import EventT

from cryptopulse.kafka import broker_ready, decode_key
from cryptopulse.settings import Settings
from schemas.events import Alert, CleanPost, DeadLetter, ScoredPost, ValidationError
from schemas.topics import ALERTS, CLEAN_POSTS, DEAD_LETTER, RAW_NEWS, RAW_REDDIT, SCORED_POSTS
from stream_processors import metrics as m
from stream_processors.cleaning import (
    REASON_INVALID_SCHEMA,
    REASON_SCORING_FAILED,
    CleaningConfig,
    LanguageDetector,
    TextTagger,
)
from stream_processors.drift import DriftMonitor
from stream_processors.live import CounterUpdate, LivePublisher
from stream_processors.liveness import (
    HEARTBEAT_INTERVAL_S,
    StallWatch,
    clear_heartbeat,
    request_graceful_stop,
    stall_restarts,
    touch_heartbeat,
)
from stream_processors.models import ALL_COINS
from stream_processors.processing import (
    COMPONENT_SCORE,
    Origin,
    dead_letter,
    process_raw,
)
from stream_processors.quality import QualityMonitor
from stream_processors.scorer import (
    BatchResult,
    ModelHolder,
    process_runtime_loader,
    registry_resolver,
    runtime_loader,
    score_batch,
)

log = structlog.get_logger(__name__)

COUNTER_WINDOWS: dict[str, int] = {"1m": 60, "5m": 300}


def _use_event(event: EventT) -> None:
    """Make ``event`` the current one, so table writes go to its changelog partition."""
    _current_event.set(weakref.ref(event))


async def _never_fail(check: Awaitable[Any], what: str) -> None:
    """Monitoring must never stop the stream: a failure is logged and retried next tick."""
    try:
        await check
    except Exception as exc:
        log.error(f"{what} failed", error=f"{type(exc).__name__}: {exc}")


async def _send(topic: faust.TopicT, key: str, value: bytes) -> Awaitable[Any]:
    """Hand a record to the producer now; the returned future resolves on the broker's ack.

    Sent at once (faust's ``stream_publish_on_commit`` is off, so nothing is held back as
    an attachment). The agents call this before they ack the input event, and faust's
    commit flushes the producer first, so a committed offset never passes an output the
    broker has not acknowledged.
    """
    return await topic.send(key=key.encode(), value=value)


def _origin(event: EventT) -> Origin:
    msg = event.message
    return Origin(msg.topic, msg.partition, msg.offset, decode_key(msg.key))


class WindowedDedup:
    """:class:`~stream_processors.processing.DedupStore` over a tumbling faust table.

    A key counts as seen when it is in the current window or the previous one, so
    the horizon is between one and two windows; old windows expire with the table.
    """

    def __init__(self, table: Any, window_s: float) -> None:
        self.table = table
        self.window_s = window_s

    def claimed_by(self, key: str) -> str | None:
        windows = self.table[key]
        return windows.current() or windows.delta(self.window_s) or None

    def claim(self, key: str, origin: str) -> None:
        self.table[key] = origin


class StreamPipeline:
    """Topics, tables, agents and timers of one app, built from settings."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        *,
        holder: ModelHolder | None = None,
        tagger: TextTagger | None = None,
        publisher: LivePublisher | None = None,
        on_stall: Callable[[], None] = request_graceful_stop,
        broker_up: Callable[[], bool] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        stream = settings.stream
        self.cleaning = CleaningConfig.from_settings(settings)
        self.detector = LanguageDetector(self.cleaning.languages, self.cleaning.short_text_chars)
        if tagger is None:
            from scoring.coins import CoinCatalog

            tagger = CoinCatalog.default()
        self.tagger = tagger
        loader = process_runtime_loader(settings) if stream.scoring_process else runtime_loader(settings)
        self.holder = holder or ModelHolder(settings.model.uri, loader, registry_resolver(settings))
        self.holder.on_swap.append(self._on_swap)
        self._in_flight: set[str] = set()  # source ids sent for scoring, not yet acked and claimed
        self.stall_watch: StallWatch[Any] = StallWatch(stream.stall_timeout_s)
        self._taken = {"clean": 0, "score": 0}  # records each agent has taken from its stream
        self.on_stall = on_stall
        self.broker_up = broker_up or (lambda: broker_ready(settings, timeout_s=3.0))
        self.stalled = False  # set once a stall made this worker stop (see liveness)
        m.STALL_RESTARTS.set(stall_restarts())  # the count lives in the environment across restarts
        self.publisher = publisher or LivePublisher(
            settings.redis.dsn, settings.redis.key_prefix, enabled=stream.live_redis
        )

        def topic(*names: str) -> faust.TopicT:
            return app.topic(*names, key_serializer="raw", value_serializer="raw")

        self.raw_topic = topic(RAW_REDDIT.name(settings), RAW_NEWS.name(settings))
        self.clean_topic = topic(CLEAN_POSTS.name(settings))
        self.scored_topic = topic(SCORED_POSTS.name(settings))
        self.dead_letter_topic = topic(DEAD_LETTER.name(settings))
        self.alerts_topic = topic(ALERTS.name(settings))
        self.quality = QualityMonitor(stream.quality_window_s, stream.quality_min_records)
        self.drift = DriftMonitor(stream.drift_window_s, stream.drift_min_records, stream.drift_psi_threshold)
        self._references: dict[str, Any] = {}  # model version -> its ReferenceDistribution (or None)
        self._source_of = {RAW_REDDIT.name(settings): "reddit", RAW_NEWS.name(settings): "news"}

        window = float(stream.dedup_window_s)
        self.dedup = WindowedDedup(
            app.Table("dedup", default=str, help="id:/hash: key -> origin that claimed it").tumbling(
                window, expires=2 * window
            ),
            window,
        )
        self.scored = WindowedDedup(
            app.Table("scored", default=str, help="source_id -> model version, once acked").tumbling(
                window, expires=2 * window
            ),
            window,
        )
        self.counters = {
            name: app.Table(
                f"counts_{name}", default=list, help=f"coin -> [volume, score_sum] per {name}"
            ).tumbling(size, expires=10 * size)
            for name, size in COUNTER_WINDOWS.items()
        }

        app.agent(self.raw_topic, name="clean")(self.clean_agent)
        app.agent(self.clean_topic, name="score")(self.score_agent)
        app.timer(interval=stream.model_poll_s, name="model_poll", on_leader=False)(self.poll_model)
        app.timer(interval=5.0, name="consumer_lag", on_leader=False)(self.update_lag)
        app.timer(interval=10.0, name="data_quality", on_leader=False)(self.quality_timer)
        app.timer(interval=30.0, name="model_drift", on_leader=False)(self.drift_timer)
        app.timer(interval=HEARTBEAT_INTERVAL_S, name="heartbeat", on_leader=False)(self.heartbeat)
        app.on_before_shutdown.connect(self._on_shutdown)  # type: ignore[arg-type]

    # -- clean -------------------------------------------------------------------------

    async def clean_agent(self, stream: faust.StreamT) -> None:
        """One outcome per raw record: CleanPost to clean.posts or DeadLetter."""
        await asyncio.to_thread(self.warm_up)
        async for event in stream.events():
            await self.clean_one(event)

    def warm_up(self) -> None:
        """Load lingua's models before the first record, not inside the event loop's first step."""
        self.detector.detect("Warming up the language models before the first record arrives here.")
        self.detector.detect("Calentando los modelos de idioma antes de que llegue el primer registro.")

    async def clean_one(self, event: EventT) -> None:
        m.EVENTS_IN.labels("clean").inc()
        self._taken["clean"] += 1
        origin = _origin(event)
        payload = event.value if isinstance(event.value, bytes) else str(event.value).encode()
        started = time.perf_counter()
        outcome = process_raw(
            payload,
            origin,
            config=self.cleaning,
            tagger=self.tagger,
            dedup=self.dedup,
            detector=self.detector,
        )
        m.CLEAN_TIME.observe(time.perf_counter() - started)
        source = self._source_of.get(origin.topic, origin.topic)
        if isinstance(outcome, CleanPost):
            self.quality.record(source, None, outcome.flags, now=time.time())
            await _send(self.clean_topic, outcome.source_id, outcome.to_json())
            m.EVENTS_OUT.labels("clean", "clean").inc()
        else:
            self.quality.record(source, outcome.reason, now=time.time())
            await self.send_dead_letter(outcome, "clean")

    async def send_dead_letter(self, record: DeadLetter, agent: str) -> Any:
        m.DEAD_LETTERS.labels(record.component, record.reason).inc()
        m.EVENTS_OUT.labels(agent, "dead_letter").inc()
        log.info(
            "dead letter",
            reason=record.reason,
            component=record.component,
            source_id=record.source_id,
            topic=record.original_topic,
            partition=record.original_partition,
            offset=record.original_offset,
        )
        return await _send(self.dead_letter_topic, record.source_id, record.to_json())

    # -- score -------------------------------------------------------------------------

    async def score_agent(self, stream: faust.StreamT) -> None:
        """Micro-batches of clean posts -> scored posts, counters and live events.

        Two batches overlap: while the model scores batch N+1, batch N waits for the
        broker's acks and updates the counters and Redis. Batch N's records are handed to
        the producer before the agent takes batch N+1 (so before its offsets can be
        committed: faust flushes the producer before it commits).
        """
        await self.ensure_model()
        stream_settings = self.settings.stream
        finishing: asyncio.Task[None] | None = None
        try:
            async for events in stream.take_events(  # type: ignore[attr-defined]
                stream_settings.batch_size, within=stream_settings.batch_within_s
            ):
                finish = await self.score_events(events, previous=finishing)
                finishing = asyncio.ensure_future(finish) if finish is not None else None
        finally:
            if finishing is not None:
                await finishing

    async def ensure_model(self) -> None:
        """Load the model, retrying while the registry has none: events wait in Kafka."""
        delay = 2.0
        while not self.holder.loaded:
            try:
                await self.holder.load()
                m.MODEL_INFO.labels(self.holder.version).set(1)
            except Exception as exc:
                log.error("model load failed; retrying", uri=self.holder.uri, error=str(exc), retry_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def score_events(
        self, events: Sequence[EventT], previous: Awaitable[None] | None = None
    ) -> Coroutine[Any, Any, None] | None:
        """Score one batch and hand its records to the producer.

        Returns what is left to do once the broker acks them (claims, counters, live
        events) as a coroutine for the caller to run alongside the next batch; the
        ``previous`` batch's is awaited first, so batches finish in order.
        """
        m.EVENTS_IN.labels("score").inc(len(events))
        self._taken["score"] += len(events)
        posts: list[CleanPost] = []
        event_of: dict[str, EventT] = {}
        pending: list[Any] = []
        for event in events:
            payload = event.value if isinstance(event.value, bytes) else str(event.value).encode()
            try:
                post = CleanPost.from_json(payload)
            except ValidationError as exc:
                record = dead_letter(
                    payload,
                    _origin(event),
                    reason=REASON_INVALID_SCHEMA,
                    detail=str(exc),
                    component=COMPONENT_SCORE,
                )
                pending.append(await self.send_dead_letter(record, "score"))
                continue
            _use_event(event)  # the windowed `scored` table reads relative to this event
            if (
                post.source_id in event_of
                or post.source_id in self._in_flight
                or self.scored.claimed_by(post.source_id)
            ):
                m.REDELIVERED.labels("score").inc()  # already scored and acked (or twice in flight)
                continue
            event_of[post.source_id] = event
            posts.append(post)
        result: BatchResult | None = None
        self._in_flight.update(event_of.keys())
        try:
            if posts:
                result = await self._score_and_send(posts, event_of, pending)
            if previous is not None:
                await previous
        except BaseException:
            # this batch will not finish: let a redelivery of its ids be scored again
            for source_id in event_of:
                self._in_flight.discard(source_id)
            raise
        if not pending:
            return None
        return self._finish_batch(pending, result, event_of)

    async def _score_and_send(
        self, posts: list[CleanPost], event_of: dict[str, EventT], pending: list[Any]
    ) -> BatchResult:
        """Score one batch with the current model and hand its records to the producer."""
        runtime = self.holder.current  # one model per batch: a hot swap lands between batches
        self._remember_reference(runtime)
        result = await asyncio.to_thread(score_batch, runtime, posts)
        m.BATCH_SIZE.observe(len(posts))
        m.INFERENCE.observe(result.inference_s)
        for scored in result.scored:
            pending.append(await _send(self.scored_topic, scored.source_id, scored.to_json()))
        for post, reason in result.failed:
            record = dead_letter(
                post.to_json(),
                _origin(event_of[post.source_id]),
                reason=REASON_SCORING_FAILED,
                detail=reason,
                component=COMPONENT_SCORE,
                source_id=post.source_id,
            )
            pending.append(await self.send_dead_letter(record, "score"))
        return result

    async def _finish_batch(
        self, pending: list[Any], result: BatchResult | None, event_of: dict[str, EventT]
    ) -> None:
        """After the broker acks a batch: mark its ids scored, count, publish live events."""
        try:
            await asyncio.gather(*pending)  # broker acks before we mark the ids as scored
        finally:
            for source_id in event_of:
                self._in_flight.discard(source_id)
        if result is None:
            return
        now = time.time()
        for scored in result.scored:
            _use_event(event_of[scored.source_id])
            self.scored.claim(scored.source_id, scored.model_version)
            m.E2E_LATENCY.observe(max(0.0, now - scored.ingest_time.timestamp()))
        for post, _ in result.failed:
            _use_event(event_of[post.source_id])
            self.scored.claim(post.source_id, "failed")
        m.EVENTS_OUT.labels("score", "scored").inc(len(result.scored))
        self.drift.record(result.scored, now=now)
        updates = self.update_counters(result.scored, event_of)
        await self.publisher.publish(result.scored, updates)

    def update_counters(
        self, scored: Sequence[ScoredPost], event_of: dict[str, EventT]
    ) -> list[CounterUpdate]:
        """Add a batch to the per-coin tumbling windows: one table write per coin and window."""
        deltas: dict[tuple[str, str, float], tuple[int, float, EventT]] = {}
        for post in scored:
            event = event_of[post.source_id]
            ts = event.message.timestamp
            for name, size in COUNTER_WINDOWS.items():
                start = ts - ts % size
                for coin in [*post.coins, ALL_COINS]:
                    n, total, _ = deltas.get((name, coin, start), (0, 0.0, event))
                    deltas[(name, coin, start)] = (n + 1, total + post.score, event)
        updates: list[CounterUpdate] = []
        for (name, coin, start), (n, total, event) in deltas.items():
            _use_event(event)
            table = self.counters[name]
            current = table[coin].current() or [0, 0.0]
            value = [int(current[0]) + n, float(current[1]) + total]
            table[coin] = value
            size = COUNTER_WINDOWS[name]
            updates.append(CounterUpdate(coin, name, start, start + size, int(value[0]), round(value[1], 6)))
        return updates

    # -- timers ------------------------------------------------------------------------

    def _flow_state(self, partitions: Sequence[Any]) -> dict[str, Any]:
        """faust's flow-control view of ``partitions``, logged with a stall to help diagnose it."""
        consumer = self.app.consumer
        state: dict[str, Any] = {
            "consumer_flow_active": getattr(consumer, "flow_active", None),
            "app_flow_active": self.app.flow_control.is_active(),
        }
        for name in ("_active_partitions", "_paused_partitions", "_buffered_partitions"):
            tps = getattr(consumer, name, None) or set()
            state[name.strip("_")] = [f"{tp.topic}[{tp.partition}]" for tp in partitions if tp in tps]
        return state

    async def poll_model(self) -> None:
        """Hot swap: follow the registry alias without a restart."""
        if self.holder.loaded:
            await self.holder.maybe_swap()

    def _on_swap(self, old: str, new: str) -> None:
        m.MODEL_SWAPS.inc()
        m.MODEL_INFO.labels(old).set(0)
        m.MODEL_INFO.labels(new).set(1)

    async def update_lag(self) -> None:
        """Consumer lag per assigned source partition; also feeds the stall watchdog."""
        observed = self.source_backlog()
        for tp, (lag, _) in observed.items():
            m.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
        await self.check_stall(observed, time.monotonic())

    def source_backlog(self) -> dict[Any, tuple[int, Hashable]]:
        """``{tp: (lag, progress)}`` of the assigned raw and clean partitions.

        Progress is the partition's read offset and the count of records its agent has
        taken: an agent working through a full buffer (reads paused) is slow, not stalled.
        """
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
            read_offsets = getattr(consumer, "_read_offset", {})
        except Exception as exc:  # not started / rebalancing: try again next tick
            log.debug("lag update skipped", error=str(exc))
            return {}
        sources = {*self.raw_topic.topics, *self.clean_topic.topics}
        observed: dict[Any, tuple[int, Hashable]] = {}
        for tp in assignment:
            if tp.topic not in sources:  # changelogs are written, not read, while active
                continue
            try:
                highwater = consumer.highwater(tp)
            except Exception as exc:  # partition not fetched yet
                log.debug("no highwater yet", topic=tp.topic, partition=tp.partition, error=str(exc))
                continue
            if highwater is None:
                continue
            read = read_offsets.get(tp)
            position = (read + 1) if read is not None else 0
            agent = "score" if tp.topic in self.clean_topic.topics else "clean"
            observed[tp] = (max(0, highwater - position), (read, self._taken[agent]))
        return observed

    async def check_stall(self, observed: dict[Any, tuple[int, Hashable]], now: float) -> list[Any]:
        """Stop the worker (to be restarted) when a source partition's backlog has not moved
        for ``stream.stall_timeout_s``. Rebalances, table recovery, a model still loading
        and an unreachable broker are expected pauses (the consumer resumes by itself once
        they end): they restart the clock."""
        if self.app.rebalancing or getattr(self.app, "in_recovery", False) or not self.holder.loaded:
            self.stall_watch.reset()
            return []
        stalled = self.stall_watch.update(observed, now)
        if stalled and not self.stalled and not await asyncio.to_thread(self.broker_up):
            log.warning("source partitions wait while the broker does not answer", timeout_s=3)
            self.stall_watch.reset()
            return []
        if stalled and not self.stalled:
            self.stalled = True
            log.error(
                "stream stalled: a partition has a backlog and made no progress; restarting the worker",
                partitions=[f"{tp.topic}[{tp.partition}] lag={observed[tp][0]}" for tp in stalled],
                timeout_s=self.stall_watch.timeout_s,
                faust_state=self._flow_state(stalled),
            )
            self.on_stall()
        return stalled

    async def quality_timer(self) -> None:
        """Timer body (no parameters: faust passes the app to a timer that takes one)."""
        await _never_fail(self.check_quality(), "data quality check")

    async def check_quality(self, now: float | None = None) -> list[Alert]:
        """Judge the data-quality windows that have closed; raise each breach once."""
        raised: list[Alert] = []
        for report in self.quality.closed(time.time() if now is None else now):
            m.QUALITY_RECORDS.labels(report.source).set(report.records)
            m.QUALITY_SCORE.labels(report.source).set(report.quality_score)
            for rule, share in report.shares.items():
                m.QUALITY_SHARE.labels(report.source, rule).set(share)
            log.info(
                "data quality window",
                source=report.source,
                records=report.records,
                shares=report.shares,
                breaches=report.breaches,
            )
            await self.publisher.record_quality(report)
            raised.extend([a for a in self.quality.alerts(report) if await self._raise_alert(a)])
        return raised

    def _remember_reference(self, runtime: Any) -> None:
        version = str(runtime.model_version)
        if version not in self._references:
            self._references[version] = getattr(runtime, "reference", None)
            if self._references[version] is None:
                log.info(
                    "model has no reference distribution: prediction drift not monitored", version=version
                )

    async def drift_timer(self) -> None:
        """Timer body (no parameters; see ``quality_timer``)."""
        await _never_fail(self.check_drift(), "model drift check")

    async def check_drift(self, now: float | None = None) -> list[Alert]:
        """Judge closed drift windows against each model's reference; raise each breach once."""
        raised: list[Alert] = []
        for report in self.drift.closed(time.time() if now is None else now, self._references):
            for signal, value in report.psi.items():
                m.DRIFT_PSI.labels(report.model_version, signal).set(value)
            log.info(
                "model drift window",
                version=report.model_version,
                records=report.records,
                psi=report.psi,
                breaches=list(report.breaches),
            )
            raised.extend([a for a in self.drift.alerts(report) if await self._raise_alert(a)])
        return raised

    async def _raise_alert(self, alert: Alert) -> bool:
        """Kafka first, then Redis (as the Spark alerts): a crash in between re-sends the alert
        with the same ``source_id`` rather than remembering one never published."""
        if await self.publisher.alert_raised(alert):
            return False
        key = ALERTS.key_of(alert) or alert.source_id
        await (await _send(self.alerts_topic, key, alert.to_json()))
        await self.publisher.record_alert(alert)
        m.ALERTS_RAISED.labels(alert.kind, alert.source_id.split(":")[1]).inc()
        log.warning("alert raised", kind=alert.kind, source_id=alert.source_id, message=alert.message)
        return True

    async def heartbeat(self) -> None:
        """Tell a successor started after a crash that this worker was alive (see liveness)."""
        touch_heartbeat(self.settings)

    async def _on_shutdown(self, app: faust.App, **kwargs: Any) -> None:
        clear_heartbeat(self.settings)  # a clean stop leaves the group: no one needs to wait
        await self.publisher.close()
        await self.holder.close()
