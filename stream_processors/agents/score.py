"""The ``score`` agent: clean.posts -> scored.posts in micro-batches, and the model hot swap.

Each micro-batch (``stream.take_events``) is scored by one model, the holder's current
one (:class:`scoring.holder.ModelHolder`); the ``model_poll`` timer follows the registry
alias, so a swap lands between batches. Each batch's scored posts are also sent to the
counts topic, one record per coin and minute, keyed by coin, for the count agent
(:mod:`.counts`), which keeps the per-coin tumbling-window counters exact however many
workers share the partitions; the scored posts go to Redis live pub/sub and the drift
monitor.
Batches are acked and claimed as the delivery contract says (:mod:`stream_processors.agents`).
Once acked, a batch's posts worth a person's label are offered to the review queue
(:mod:`stream_processors.review`) in the same Redis pipeline as the live events.

A record that cannot be read or scored is dead-lettered alone (``invalid_schema``,
``scoring_failed``, ``unhandled_error``). A batch that fails as a whole (the model's process
died and could not be rebuilt, the producer refused its records, the broker answered at two
``stream.ack_timeout_s`` checks in a row without acking them, a bug) is not the records'
fault: the worker exits without releasing it (:func:`exit_for_supervisor`), so nothing is
committed past it, the supervisor restarts the worker and the batch is scored again, instead
of a worker that reports a loaded model while its batches fail, or one that waits for the next
batch to say that one failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
import structlog
from faust.types import EventT

from core.settings import StreamSettings
from schemas.events import CleanPost, ScoredPost
from scoring.holder import ModelHolder
from stream_processors import metrics as m
from stream_processors.agents import (
    DeadLetters,
    exit_for_supervisor,
    origin_of,
    payload_of,
    send,
    unreadable,
)
from stream_processors.agents.counts import count_records
from stream_processors.cleaning import REASON_SCORING_FAILED
from stream_processors.drift import DriftMonitor
from stream_processors.live import LivePublisher
from stream_processors.processing import COMPONENT_SCORE, dead_letter
from stream_processors.review import ReviewCandidate, ReviewRanker
from stream_processors.scorer import BatchResult, score_batch
from stream_processors.tables import StreamTables, use_event
from stream_processors.topics import StreamTopics

log = structlog.get_logger(__name__)


class DeliveryStalled(RuntimeError):
    """The broker answers, but has not acked a batch's records within ``stream.ack_timeout_s``."""


def hold(events: Sequence[EventT]) -> None:
    """Keep faust from marking these events' offsets committable when it acks them."""
    for event in events:
        event.message.incref()


def release(events: Sequence[EventT]) -> None:
    """Drop :func:`hold`'s reference; an offset whose last reference goes is committable."""
    for event in events:
        if event.ack():  # the last reference: tell faust's sensors, as its own ack would
            message = event.message
            event.app.sensors.on_message_out(message.tp, message.offset, message)


class ScoreAgent:
    """Scores clean posts in micro-batches with the model the holder serves."""

    name = "score"

    def __init__(
        self,
        settings: StreamSettings,
        topics: StreamTopics,
        tables: StreamTables,
        dead_letters: DeadLetters,
        holder: ModelHolder,
        publisher: LivePublisher,
        drift: DriftMonitor,
        *,
        exit_worker: Callable[[BaseException], None] = exit_for_supervisor,
        review: ReviewRanker | None = None,
        broker_up: Callable[[], bool] = lambda: True,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.tables = tables
        self.dead_letters = dead_letters
        self.holder = holder
        self.publisher = publisher
        self.drift = drift
        self.exit_worker = exit_worker  # called once, when a batch fails as a whole
        self._failed = False  # a batch failed as a whole: the worker is on its way out
        self.review = review  # ranks the batch's posts for the review queue (None: no queue)
        self.broker_up = broker_up  # whether a batch's missing acks are the broker's absence
        self.holder.on_swap.append(self._on_swap)
        self._in_flight: set[str] = set()  # source ids sent for scoring, not yet acked and claimed
        self.taken = 0  # records taken from the stream: progress for the stall watchdog

    @property
    def source(self) -> faust.TopicT:
        return self.topics.clean

    def register(self, app: faust.App) -> None:
        app.agent(self.source, name=self.name)(self.run)
        app.timer(interval=self.settings.model_poll_s, name="model_poll", on_leader=False)(self.poll_model)

    async def run(self, stream: faust.StreamT) -> None:
        """Micro-batches of clean posts -> scored posts, count records and live events.

        Two batches are in flight: batch N+1 is read and queued for the scoring process
        while the model still scores batch N, so the model never waits for the agent. With
        one batch at a time the scoring process sat idle ~15 % of the time at saturation
        (faust buffers the next batch only after the agent has finished the previous one,
        ~48 ms per batch of 128, plus the hand-off to and from the process).

        faust acks a batch's events as soon as the agent takes the next one, which here is
        before their records are produced. So each batch holds a reference on its messages
        (:func:`hold`) and releases it (:func:`release`) only once the broker acked its
        records: no offset is committed past a record whose outputs the broker does not have.
        Batches finish in order.
        """
        await self.ensure_model()
        in_flight: list[asyncio.Task[None]] = []
        try:
            async for events in stream.take_events(  # type: ignore[attr-defined]
                self.settings.batch_size, within=self.settings.batch_within_s
            ):
                hold(events)
                previous = in_flight[-1] if in_flight else None
                in_flight.append(asyncio.ensure_future(self.score_events(events, previous=previous)))
                if len(in_flight) > 1:
                    await in_flight[0]  # at most two batches in flight
                    in_flight.pop(0)
        finally:
            if in_flight:  # the last batch finishes (or fails) before the agent stops
                await asyncio.wait(in_flight)
                for task in in_flight:
                    error = None if task.cancelled() else task.exception()
                    if error is not None:
                        log.error("a scoring batch failed", error=repr(error))

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

    async def poll_model(self) -> None:
        """Hot swap: follow the registry alias without a restart."""
        if self.holder.loaded:
            await self.holder.maybe_swap()

    def _on_swap(self, old: str, new: str) -> None:
        m.MODEL_SWAPS.inc()
        m.MODEL_INFO.labels(old).set(0)
        m.MODEL_INFO.labels(new).set(1)

    async def score_events(self, events: Sequence[EventT], previous: Awaitable[None] | None = None) -> None:
        """Score one batch, hand its records to the producer, release its events once the
        broker has them, finish it.

        The ``previous`` batch is awaited once this one is scored and before its records
        are sent, so batches reach the broker, release their offsets and claim their ids
        in order. The events must be held (:func:`hold`); they are released here once the
        broker acked the batch's records, or when the batch is cancelled. A batch that fails
        exits the worker first (:meth:`_fail_batch`): faust's commit flushes the producer but
        does not check its deliveries, so a batch released before the broker's acks could be
        committed past records the broker refused.
        """
        m.EVENTS_IN.labels(self.name).inc(len(events))
        self.taken += len(events)
        posts: list[CleanPost] = []
        event_of: dict[str, EventT] = {}
        pending: list[Any] = []
        unreadable_events: list[tuple[EventT, Exception]] = []
        for event in events:
            try:
                post = CleanPost.from_json(payload_of(event))
            except Exception as exc:  # the record fails alone, whatever it holds
                unreadable_events.append((event, exc))
                continue
            use_event(event)  # the windowed `scored` table reads relative to this event
            if (
                post.source_id in event_of
                or post.source_id in self._in_flight
                or self.tables.scored.claimed_by(post.source_id)
            ):
                m.REDELIVERED.labels(self.name).inc()  # already scored and acked (or twice in flight)
                continue
            event_of[post.source_id] = event
            posts.append(post)
        self._in_flight.update(event_of.keys())
        result: BatchResult | None = None
        # queued for the scoring process now; the batch before goes first
        scoring = asyncio.ensure_future(self._score(posts)) if posts else None
        try:
            if previous is not None:
                await previous
            result = await scoring if scoring is not None else None
            for event, error in unreadable_events:
                letter = unreadable(event, error, component=COMPONENT_SCORE)
                pending.append(await self.dead_letters.send(letter, self.name))
            if result is not None:
                await self._send(result, event_of, pending)
            await self._delivered(pending)  # the broker has the records: now offsets may pass them
        except BaseException as exc:
            # this batch will not finish: let a redelivery of its ids be scored again
            if scoring is not None:
                scoring.cancel()
            self._fail_batch(exc)  # before the events are released: returns only in tests
            raise
        finally:
            for source_id in event_of:
                self._in_flight.discard(source_id)  # claimed next, with no await in between
            release(events)
        await self._finish_batch(result, event_of)

    async def _delivered(self, pending: Sequence[Awaitable[Any]]) -> None:
        """Wait for the broker's acks of a batch's records.

        Every ``stream.ack_timeout_s`` without them, the broker is asked whether it answers. A
        broker that is away is waited for (the producer retries). One that answered at two
        checks in a row while the acks stayed away means a stuck producer (one such aiokafka
        bug is :mod:`core.async_kafka`'s): the batch fails as a whole, so the worker restarts
        and sends it again, instead of waiting for ever with its offsets held. Two checks, so
        that a broker just back (leaders elected, metadata refreshed) gets a full timeout.
        """
        acks = asyncio.gather(*pending)
        acks.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved
        timeout = self.settings.ack_timeout_s or None
        started = time.monotonic()
        answered_in_a_row = 0
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(acks), timeout)
                return
            except TimeoutError:
                broker_up = await asyncio.to_thread(self.broker_up)
                if acks.done():  # the acks came during the probe
                    await acks
                    return
                waited = round(time.monotonic() - started, 1)
                answered_in_a_row = answered_in_a_row + 1 if broker_up else 0
                if answered_in_a_row >= 2:
                    records = len(pending)
                    raise DeliveryStalled(
                        f"the broker answers but has not acked the batch's {records} records in {waited} s"
                    ) from None
                log.warning("a batch waits for the broker's acks", waited_s=waited, broker_answers=broker_up)

    def _fail_batch(self, error: BaseException) -> None:
        """A batch failed as a whole: exit for the supervisor, once (a batch that waited on the
        failed one fails with it). A cancelled batch (the agent stopping) is not a failure."""
        if isinstance(error, asyncio.CancelledError) or self._failed:
            return
        self._failed = True
        self.exit_worker(error)

    async def _score(self, posts: list[CleanPost]) -> BatchResult:
        """Score one batch with the current model (a hot swap lands between batches)."""
        runtime = self.holder.current
        self.drift.follow(runtime)
        result = await asyncio.to_thread(score_batch, runtime, posts)  # raises: the batch fails
        m.BATCH_SIZE.observe(len(posts))
        m.INFERENCE.observe(result.inference_s)
        return result

    async def _send(self, result: BatchResult, event_of: dict[str, EventT], pending: list[Any]) -> None:
        """Hand one scored batch's records to the producer: scored posts, counts, dead letters."""
        for scored in result.scored:
            pending.append(await send(self.topics.scored, scored.source_id, scored.to_json()))
        pending.extend(await self.send_counts(result.scored, event_of))
        for post, reason in result.failed:
            record = dead_letter(
                post.to_json(),
                origin_of(event_of[post.source_id]),
                reason=REASON_SCORING_FAILED,
                detail=reason,
                component=COMPONENT_SCORE,
                source_id=post.source_id,
            )
            pending.append(await self.dead_letters.send(record, self.name))

    async def _finish_batch(self, result: BatchResult | None, event_of: dict[str, EventT]) -> None:
        """After the broker acks a batch (its scored and count records): mark its ids scored,
        publish live events. A batch redelivered before its claims sends its count records
        again; the count agent skips those it counted already. The records are delivered by
        now, so a failure here is logged, not a reason to restart the worker."""
        if result is None:
            return
        try:
            await self._record_delivered(result, event_of)
        except Exception:
            log.exception("bookkeeping of a delivered batch failed", records=len(result.scored))

    async def _record_delivered(self, result: BatchResult, event_of: dict[str, EventT]) -> None:
        now = time.time()
        for scored in result.scored:
            use_event(event_of[scored.source_id])
            self.tables.scored.claim(scored.source_id, scored.model_version)
            m.E2E_LATENCY.observe(max(0.0, now - scored.ingest_time.timestamp()))
            m.VERDICTS.labels(scored.label.value).inc()
            m.CONFIDENCE.observe(scored.confidence)
        for post, _ in result.failed:
            use_event(event_of[post.source_id])
            self.tables.scored.claim(post.source_id, "failed")
        self.tables.scored.flush()  # one changelog record per window and partition
        m.EVENTS_OUT.labels(self.name, "scored").inc(len(result.scored))
        self.drift.record(result.scored, now=now)
        await self.publisher.publish(result.scored, (), await self.review_candidates(result))

    async def review_candidates(self, result: BatchResult) -> list[ReviewCandidate]:
        """The batch's review candidates (none when Redis is off; a failure only logs)."""
        if self.review is None or not self.publisher.enabled or not result.scored:
            return []
        try:
            return await self.review.rank(result.scored, result.members)
        except Exception as exc:  # the queue is a hint: it never holds scoring up
            log.warning("review ranking failed", error=str(exc))
            return []

    async def send_counts(
        self, posts: Sequence[ScoredPost], event_of: dict[str, EventT]
    ) -> list[Awaitable[Any]]:
        """Hand the batch's count records (one per coin, and ``all``, and minute) to the
        producer, keyed by coin and stamped with the clean records' time, which decides
        their counter windows (:func:`~stream_processors.agents.counts.count_records`)."""
        records = count_records(
            [(p.source_id, p.coins, p.score, event_of[p.source_id].message.timestamp) for p in posts]
        )
        return [
            await self.topics.counts.send(key=record.coin.encode(), value=record.to_json(), timestamp=stamp)
            for record, stamp in records
        ]
