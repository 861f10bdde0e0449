"""The ``clean`` agent: raw.reddit + raw.news -> clean.posts or deadletter, one outcome per record.

The rules (validation, normalisation, language, de-duplication by source id and content
hash in the windowed ``dedup`` table) are :func:`stream_processors.processing.process_raw`'s;
this agent feeds it the stream, sends each outcome (see the delivery contract in
:mod:`stream_processors.agents`) and counts it for the data-quality monitor.

Any exception while handling one record dead-letters that record (``unhandled_error``, with
the exception type): one raised out of the agent would be logged by faust, and the record
acked and lost.
"""

from __future__ import annotations

import asyncio
import time

import faust
import structlog
from faust.types import EventT

from schemas.events import CleanPost
from stream_processors import metrics as m
from stream_processors.agents import DeadLetters, origin_of, payload_of, send
from stream_processors.cleaning import CleaningConfig, LanguageDetector, TextTagger
from stream_processors.processing import COMPONENT_CLEAN, Origin, process_raw, unhandled_error
from stream_processors.quality import QualityMonitor
from stream_processors.tables import BatchedClaims
from stream_processors.topics import StreamTopics

log = structlog.get_logger(__name__)

YIELD_EVERY_S = 0.002
"""Longest the clean agent runs before it lets other tasks in. Faust's stream iteration
does not suspend while records are buffered, so without this the agent cleans a whole
fetch (hundreds of records, ~0.5 ms each) in one go, while the score agent's finished
batch waits and the scoring child idles: measured at saturation, 447 -> 498 events/s."""

FLUSH_CLAIMS_EVERY_S = 0.05
"""Longest the clean agent keeps its de-duplication claims in memory only: checked after
each record while records arrive, and the ``dedup_claims`` timer runs at this interval for a
stream that went quiet. One changelog record per flush and partition instead of two per
record. Every offset commit flushes them first (``StreamApp.before_commit``), so a crash
loses only claims of records not committed yet, which are redelivered and claim again."""


class CleanAgent:
    """Cleans raw records into clean posts or dead letters."""

    name = "clean"

    def __init__(
        self,
        topics: StreamTopics,
        dedup: BatchedClaims,
        dead_letters: DeadLetters,
        quality: QualityMonitor,
        config: CleaningConfig,
        tagger: TextTagger,
    ) -> None:
        self.topics = topics
        self.dedup = dedup
        self.dead_letters = dead_letters
        self.quality = quality
        self.config = config
        self.tagger = tagger
        self.detector = LanguageDetector(config.languages, config.short_text_chars)
        self.taken = 0  # records taken from the stream: progress for the stall watchdog

    @property
    def source(self) -> faust.TopicT:
        return self.topics.raw

    def register(self, app: faust.App) -> None:
        app.agent(self.source, name=self.name)(self.run)
        app.timer(interval=FLUSH_CLAIMS_EVERY_S, name="dedup_claims", on_leader=False)(self._flush_idle)
        app.on_partitions_revoked.connect(self._flush_on_revoke)  # type: ignore[arg-type]
        if isinstance(getattr(app, "before_commit", None), list):
            app.before_commit.append(self.flush_claims)  # type: ignore[attr-defined]

    async def _flush_idle(self) -> None:
        """An idle stream's last claims reach the changelog too."""
        self.flush_claims()

    async def _flush_on_revoke(self, app: faust.App, revoked: object, **kwargs: object) -> None:
        """A partition handed over takes its claims with it: flushed and sent before we rejoin."""
        if self.flush_claims():
            await app.producer.flush()

    async def run(self, stream: faust.StreamT) -> None:
        """One outcome per raw record: CleanPost to clean.posts or DeadLetter."""
        await asyncio.to_thread(self.warm_up)
        last_yield = time.perf_counter()
        last_flush = last_yield
        async for event in stream.events():
            await self.clean_one(event)
            now = time.perf_counter()
            if now - last_flush > FLUSH_CLAIMS_EVERY_S:
                self.flush_claims()
                last_flush = now
            if now - last_yield > YIELD_EVERY_S:
                await asyncio.sleep(0)  # let the score agent hand its child the next batch
                last_yield = time.perf_counter()

    def flush_claims(self) -> int:
        """Make the claims so far durable (one changelog record per window and partition)."""
        return self.dedup.flush()

    def warm_up(self) -> None:
        """Load lingua's models before the first record, not inside the event loop's first step."""
        self.detector.warm_up()

    async def clean_one(self, event: EventT) -> None:
        """Exactly one outcome for ``event``; a record whose handling raises is dead-lettered."""
        m.EVENTS_IN.labels(self.name).inc()
        self.taken += 1
        origin = origin_of(event)
        payload = payload_of(event)
        try:
            await self._clean(payload, origin)
        except Exception as exc:
            log.exception("clean failed on one record", topic=origin.topic, offset=origin.offset)
            letter = unhandled_error(payload, origin, exc, component=COMPONENT_CLEAN)
            await self.dead_letters.send(letter, self.name)

    async def _clean(self, payload: bytes, origin: Origin) -> None:
        started = time.perf_counter()
        outcome = process_raw(
            payload,
            origin,
            config=self.config,
            tagger=self.tagger,
            dedup=self.dedup,
            detector=self.detector,
        )
        m.CLEAN_TIME.observe(time.perf_counter() - started)
        source = self.topics.source_of(origin.topic)
        if isinstance(outcome, CleanPost):
            self.quality.record(source, None, outcome.flags, now=time.time())
            await send(self.topics.clean, outcome.source_id, outcome.to_json())
            m.EVENTS_OUT.labels(self.name, "clean").inc()
        else:
            self.quality.record(source, outcome.reason, now=time.time())
            await self.dead_letters.send(outcome, self.name)
