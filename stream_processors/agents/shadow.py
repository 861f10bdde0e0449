"""The ``shadow`` agent: the challenger scores live posts beside the champion, off its path.

It reads ``scored.posts`` (what the champion already decided), not ``clean.posts``, so the
champion's latency never waits on a second model: the shadow agent is a consumer of its
own, in its own micro-batches, with its own :class:`~scoring.holder.ModelHolder` of
``models:/NAME@challenger`` (``challenger_poll`` follows that alias as ``model_poll``
follows the champion's). With no challenger it acks batches unread: no parsing, no
scoring, no log line per poll (one when the state changes).

Of each batch it scores the deterministic share ``learning.shadow_share`` (a hash of the
source id, so every worker and every replay picks the same posts) that is still live
(:data:`SHADOW_MAX_AGE_S`: a first start does not score a week of backlog), and then:

* publishes a :class:`~schemas.events.ShadowVerdict` per post to ``scored.shadow``;
* adds the batch to the pair's ``shadow:stats`` hash (``records``, ``agree``,
  ``champion_<label>``, ``challenger_<label>``) and sets the agreement gauge from the
  totals of all workers;
* offers each disagreement to the review queue (``challenger_disagrees``).

The ``shadow_feedback`` agent reads ``feedback``: a label on a post this worker shadow-scored
(a bounded in-memory memory of :data:`MEMORY_MAX` verdicts; both topics are keyed and
partitioned by source id, so a post's verdict and its feedback reach the same worker)
counts ``feedback``, ``champion_correct`` and ``challenger_correct`` in the same hash. The
leader's ``shadow_mlflow`` timer logs agreement and feedback accuracy on the challenger
version's MLflow run every :data:`MLFLOW_LOG_S` seconds; a failure there is logged, never fatal.

A record that cannot be read, or whose handling raises, is dead-lettered alone
(``invalid_schema``, ``scoring_failed``, ``unhandled_error``; component ``stream.shadow``). A
challenger that fails a whole batch is not the records' fault and the champion's verdicts
are already out: the batch is counted as skipped (``challenger_failed``) and logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import structlog
from faust.types import EventT

from core.kafka import decode_key
from core.settings import Settings
from schemas.events import Feedback, ScoredPost, SentimentLabel, ShadowVerdict, ValidationError
from scoring.holder import ModelHolder, Resolver
from scoring.registry_uri import MODELS_SCHEME, is_registry_uri, parse_models_uri
from stream_processors import metrics as m
from stream_processors.agents import DeadLetters, origin_of, payload_of, send, unreadable
from stream_processors.cleaning import REASON_INVALID_SCHEMA, REASON_SCORING_FAILED
from stream_processors.live import LivePublisher
from stream_processors.processing import dead_letter, unhandled_error
from stream_processors.review import ReviewRanker
from stream_processors.topics import StreamTopics
from views.writer import (
    SHADOW_AGREE,
    SHADOW_CHALLENGER_CORRECT,
    SHADOW_CHAMPION_CORRECT,
    SHADOW_FEEDBACK,
    SHADOW_RECORDS,
    shadow_label_field,
)

log = structlog.get_logger(__name__)

COMPONENT_SHADOW = "stream.shadow"
CHALLENGER_ALIAS = "challenger"
SHADOW_MAX_AGE_S = 600.0
"""A scored post older than this (Kafka timestamp) is not live any more: not shadow-scored."""
MEMORY_MAX = 100_000
"""Shadow verdicts remembered for feedback accuracy (about 20 MB); the oldest go first."""
MLFLOW_LOG_S = 300.0
"""How often the leader logs the pair's agreement and feedback accuracy to MLflow."""

MlflowLogger = Callable[[str, str, dict[str, int]], None]
"""(champion label, challenger label, the pair's counters) -> metrics logged (blocking)."""


def in_share(source_id: str, share: float) -> bool:
    """Whether ``source_id`` is in the sampled ``share``: a stable hash, the same on every worker."""
    if share >= 1.0:
        return True
    if share <= 0.0:
        return False
    digest = hashlib.blake2b(source_id.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def challenger_uri(settings: Settings) -> str:
    """``models:/NAME@challenger`` of the registered model the champion URI names (or of
    ``mlflow.registered_model`` when the champion is a directory)."""
    uri = settings.model.uri
    name = parse_models_uri(uri)[0] if is_registry_uri(uri) else settings.mlflow.registered_model
    return f"{MODELS_SCHEME}{name}@{CHALLENGER_ALIAS}"


@dataclass(frozen=True, slots=True)
class Remembered:
    """One shadow verdict, kept until its post's feedback arrives (or it ages out)."""

    champion: str
    champion_label: str
    challenger: str
    challenger_label: str


class ShadowMemory:
    """Source id -> :class:`Remembered`, bounded: the oldest verdicts are forgotten first."""

    def __init__(self, capacity: int = MEMORY_MAX) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Remembered] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, source_id: object) -> bool:
        return source_id in self._items

    def remember(self, source_id: str, verdict: Remembered) -> None:
        self._items[source_id] = verdict
        self._items.move_to_end(source_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def take(self, source_id: str) -> Remembered | None:
        """The verdict, forgotten now: a second feedback on the same post is not counted twice."""
        return self._items.pop(source_id, None)


def _label(value: object) -> str:
    return str(getattr(value, "value", value))


class ShadowAgent:
    """Scores a share of the champion's scored posts with the challenger; counts agreement."""

    name = "shadow"
    feedback_name = "shadow_feedback"

    def __init__(
        self,
        settings: Settings,
        topics: StreamTopics,
        dead_letters: DeadLetters,
        holder: ModelHolder,
        publisher: LivePublisher,
        ranker: ReviewRanker | None,
        *,
        resolver: Resolver | None,
        champion: ModelHolder | None = None,
        mlflow_log: MlflowLogger | None = None,
        memory: ShadowMemory | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.dead_letters = dead_letters
        self.holder = holder
        self.publisher = publisher
        self.ranker = ranker
        self.resolver = resolver  # challenger URI -> version label; raises/None: no challenger
        self.champion = champion
        self.mlflow_log = mlflow_log
        self.memory = memory or ShadowMemory()
        self._seen: OrderedDict[str, None] = OrderedDict()  # recently shadow-scored ids (redeliveries)
        self._state = "starting"
        self._pairs: set[tuple[str, str]] = set()  # pairs this worker counted (for MLflow)
        self._polling = asyncio.Lock()  # the agent's first poll and the timer's never overlap

    @property
    def enabled(self) -> bool:
        return self.settings.learning.shadow_enabled

    def register(self, app: faust.App) -> None:
        """The agents and timers, only when ``learning.shadow_enabled`` (else nothing runs)."""
        if not self.enabled:
            return
        stream = self.settings.stream
        app.agent(self.topics.scored, name=self.name)(self.run)
        app.agent(self.topics.feedback, name=self.feedback_name)(self.run_feedback)
        app.timer(interval=stream.model_poll_s, name="challenger_poll", on_leader=False)(self.poll_challenger)
        app.timer(interval=MLFLOW_LOG_S, name="shadow_mlflow", on_leader=True)(self.log_to_mlflow)

    # -- the challenger ----------------------------------------------------------------------
    def _note(self, state: str, *, level: str = "info", **fields: Any) -> None:
        """Log a state change once (a poll that finds what the last one found says nothing)."""
        if state != self._state:
            self._state = state
            getattr(log, level)(f"shadow: {state}", uri=self.holder.uri, **fields)

    async def poll_challenger(self) -> None:
        """Follow the challenger alias: load it when it appears, swap it when it moves,
        release it when it goes (shadow scoring then idles). A poll still running (a load
        takes seconds) makes the next one a no-op, so a version is never loaded twice."""
        if self._polling.locked():
            return
        async with self._polling:
            await self._poll()

    async def _poll(self) -> None:
        wanted: str | None = None
        why = "the alias points nowhere"
        if self.resolver is not None:
            try:
                wanted = await asyncio.to_thread(self.resolver, self.holder.uri)
            except Exception as exc:  # no alias, no model, or the registry is away: idle
                why = str(exc)
        if wanted is None and self.resolver is not None:
            self._note("no challenger; idle", reason=why[:300])
            if self.holder.loaded:
                old = self.holder.version or "none"
                await self.holder.close()
                m.CHALLENGER_INFO.labels(old).set(0)
            return
        if not self.holder.loaded:
            try:
                await self.holder.load()
            except Exception as exc:
                self._note("challenger load failed; idle", level="warning", error=str(exc)[:300])
                return
            m.CHALLENGER_INFO.labels(self.holder.version).set(1)
        elif wanted is not None and wanted != self.holder.version:
            old = self.holder.version or "none"
            if await self.holder.maybe_swap():
                m.CHALLENGER_INFO.labels(old).set(0)
                m.CHALLENGER_INFO.labels(self.holder.version).set(1)
        self._note(f"scoring with challenger {self.holder.version}", challenger=self.holder.version)

    # -- shadow scoring ----------------------------------------------------------------------
    async def run(self, stream: faust.StreamT) -> None:
        """Micro-batches of scored posts -> shadow verdicts (a batch is acked when the loop moves on)."""
        await self.poll_challenger()
        async for events in stream.take_events(  # type: ignore[attr-defined]
            self.settings.stream.batch_size, within=self.settings.stream.batch_within_s
        ):
            try:
                await self.shadow_events(events)
            except Exception as exc:  # a bug must not lose records silently nor stop the agent
                log.exception("shadow batch failed; dead-lettering its records", error=str(exc))
                for event in events:
                    record = unhandled_error(
                        payload_of(event), origin_of(event), exc, component=COMPONENT_SHADOW
                    )
                    await self.dead_letters.send(record, self.name)

    async def shadow_events(self, events: Sequence[EventT]) -> list[ShadowVerdict]:
        """Shadow-score one batch; returns the verdicts handed to the producer."""
        m.EVENTS_IN.labels(self.name).inc(len(events))
        runtime = self.holder.runtime
        if runtime is None:
            m.SHADOW_SKIPPED.labels("no_challenger").inc(len(events))
            return []
        share = self.settings.learning.shadow_share
        now = time.time()
        skipped: Counter[str] = Counter()
        posts: list[ScoredPost] = []
        event_of: dict[str, EventT] = {}
        for event in events:
            key = decode_key(event.message.key)
            if key is not None and not in_share(key, share):
                skipped["not_sampled"] += 1
                continue
            if now - float(event.message.timestamp or now) > SHADOW_MAX_AGE_S:
                skipped["stale"] += 1
                continue
            post = await self._read(event)
            if post is None:
                continue
            if key is None and not in_share(post.source_id, share):
                skipped["not_sampled"] += 1
                continue
            if post.source_id in self._seen or post.source_id in event_of:
                skipped["redelivered"] += 1
                continue
            posts.append(post)
            event_of[post.source_id] = event
        for reason, n in skipped.items():
            m.SHADOW_SKIPPED.labels(reason).inc(n)
        if not posts:
            return []
        try:
            results = await asyncio.to_thread(lambda: list(runtime.score([p.text for p in posts])))
            if len(results) != len(posts):
                raise RuntimeError(f"challenger returned {len(results)} scores for {len(posts)} texts")
        except Exception as exc:
            m.SHADOW_SKIPPED.labels("challenger_failed").inc(len(posts))
            log.error("the challenger failed a whole batch", error=f"{type(exc).__name__}: {exc}")
            return []
        verdicts = await self._publish(posts, results, event_of)
        await self._count(verdicts)
        await self._offer_disagreements(verdicts, {p.source_id: p for p in posts})
        return verdicts

    async def _read(self, event: EventT) -> ScoredPost | None:
        """The scored post of ``event``, or None after dead-lettering it."""
        payload = payload_of(event)
        try:
            post: ScoredPost = ScoredPost.from_json(payload)
            return post
        except Exception as exc:  # the record fails alone, whatever it holds
            await self.dead_letters.send(unreadable(event, exc, component=COMPONENT_SHADOW), self.name)
            return None

    async def _publish(
        self, posts: Sequence[ScoredPost], results: Sequence[Any], event_of: dict[str, EventT]
    ) -> list[ShadowVerdict]:
        verdicts: list[ShadowVerdict] = []
        pending: list[Awaitable[Any]] = []
        for post, result in zip(posts, results, strict=True):
            event = event_of[post.source_id]
            if result.error is not None or result.label is None:
                record = dead_letter(
                    post.to_json(),
                    origin_of(event),
                    reason=REASON_SCORING_FAILED,
                    detail=f"challenger: {result.error or 'no label'}",
                    component=COMPONENT_SHADOW,
                    source_id=post.source_id,
                )
                pending.append(await self.dead_letters.send(record, self.name))
                continue
            try:
                challenger_label = SentimentLabel(_label(result.label))
                verdict = ShadowVerdict(
                    source_id=post.source_id,
                    event_time=post.event_time,
                    champion_version=post.model_version,
                    champion_label=post.label,
                    challenger_version=str(result.model_version),
                    challenger_label=challenger_label,
                    challenger_score=min(1.0, max(-1.0, float(result.score or 0.0))),
                    challenger_confidence=min(1.0, max(0.0, float(result.confidence or 0.0))),
                    agree=challenger_label == post.label,
                    coins=list(post.coins),
                    source=post.source,
                )
            except Exception as exc:
                record = unhandled_error(
                    post.to_json(),
                    origin_of(event),
                    exc,
                    component=COMPONENT_SHADOW,
                    source_id=post.source_id,
                )
                pending.append(await self.dead_letters.send(record, self.name))
                continue
            pending.append(await send(self.topics.shadow, verdict.source_id, verdict.to_json()))
            verdicts.append(verdict)
            self._seen[post.source_id] = None
            self.memory.remember(
                post.source_id,
                Remembered(
                    verdict.champion_version,
                    _label(verdict.champion_label),
                    verdict.challenger_version,
                    _label(verdict.challenger_label),
                ),
            )
        while len(self._seen) > MEMORY_MAX:
            self._seen.popitem(last=False)
        m.EVENTS_OUT.labels(self.name, "shadow_verdict").inc(len(verdicts))
        return verdicts

    async def _count(self, verdicts: Sequence[ShadowVerdict]) -> None:
        """Add the batch to each pair's counters (one MULTI per pair) and refresh the gauges."""
        counts: dict[tuple[str, str], Counter[str]] = {}
        for v in verdicts:
            pair = (v.champion_version, v.challenger_version)
            c = counts.setdefault(pair, Counter())
            c[SHADOW_RECORDS] += 1
            c[SHADOW_AGREE] += int(v.agree)
            c[shadow_label_field("champion", _label(v.champion_label))] += 1
            c[shadow_label_field("challenger", _label(v.challenger_label))] += 1
            m.SHADOW_VERDICTS.labels(*pair, str(v.agree).lower()).inc()
        for pair, c in counts.items():
            self._pairs.add(pair)
            totals = await self.publisher.count_shadow(*pair, dict(c))
            if totals:
                self._set_gauges(pair, totals)

    def _set_gauges(self, pair: tuple[str, str], totals: dict[str, int]) -> None:
        records = totals.get(SHADOW_RECORDS, 0)
        m.SHADOW_RECORDS.labels(*pair).set(records)
        if records:
            m.SHADOW_AGREEMENT.labels(*pair).set(totals.get(SHADOW_AGREE, 0) / records)
        feedback = totals.get(SHADOW_FEEDBACK, 0)
        m.SHADOW_FEEDBACK_LABELS.labels(*pair).set(feedback)
        if feedback:
            for model, name in (
                ("champion", SHADOW_CHAMPION_CORRECT),
                ("challenger", SHADOW_CHALLENGER_CORRECT),
            ):
                m.SHADOW_FEEDBACK_ACCURACY.labels(*pair, model).set(totals.get(name, 0) / feedback)

    async def _offer_disagreements(
        self, verdicts: Sequence[ShadowVerdict], posts: dict[str, ScoredPost]
    ) -> None:
        """A post the two models disagree on is worth a label: raise it in the review queue."""
        if self.ranker is None:
            return
        dissent = {v.source_id: _label(v.challenger_label) for v in verdicts if not v.agree}
        if not dissent:
            return
        try:
            candidates = await self.ranker.rank([posts[sid] for sid in dissent], challenger=dissent)
        except Exception as exc:  # the queue is a hint: never a reason to lose verdicts
            log.warning("review ranking of shadow disagreements failed", error=str(exc))
            return
        await self.publisher.publish([], [], candidates)

    # -- feedback accuracy -------------------------------------------------------------------
    async def run_feedback(self, stream: faust.StreamT) -> None:
        """Feedback labels -> champion/challenger accuracy of the shadow-scored posts."""
        async for event in stream.events():
            try:
                await self.on_feedback(event)
            except Exception as exc:
                record = unhandled_error(payload_of(event), origin_of(event), exc, component=COMPONENT_SHADOW)
                await self.dead_letters.send(record, self.feedback_name)

    async def on_feedback(self, event: EventT) -> bool:
        """Count one feedback label against the post's shadow verdict; True when counted."""
        m.EVENTS_IN.labels(self.feedback_name).inc()
        payload = payload_of(event)
        try:
            feedback = Feedback.from_json(payload)
        except ValidationError as exc:
            record = dead_letter(
                payload,
                origin_of(event),
                reason=REASON_INVALID_SCHEMA,
                detail=str(exc),
                component=COMPONENT_SHADOW,
            )
            await self.dead_letters.send(record, self.feedback_name)
            return False
        verdict = self.memory.take(feedback.source_id)
        if verdict is None:
            return False  # not shadow-scored here (another share, no challenger then, or forgotten)
        label = _label(feedback.label)
        pair = (verdict.champion, verdict.challenger)
        counts = {
            SHADOW_FEEDBACK: 1,
            SHADOW_CHAMPION_CORRECT: int(verdict.champion_label == label),
            SHADOW_CHALLENGER_CORRECT: int(verdict.challenger_label == label),
        }
        self._pairs.add(pair)
        totals = await self.publisher.count_shadow(*pair, counts)
        if totals:
            self._set_gauges(pair, totals)
        m.EVENTS_OUT.labels(self.feedback_name, "counted").inc()
        return True

    # -- MLflow ------------------------------------------------------------------------------
    def current_pairs(self) -> set[tuple[str, str]]:
        """The pairs worth logging: this worker's, plus the champion and challenger in service
        (the leader may own none of the partitions that carry them)."""
        pairs = set(self._pairs)
        champion = self.champion.version if self.champion is not None else None
        if champion and self.holder.version:
            pairs.add((champion, self.holder.version))
        return pairs

    async def log_to_mlflow(self) -> int:
        """Log every current pair's agreement and feedback accuracy; returns the pairs logged.
        Failures are logged and skipped: MLflow being away never touches the stream."""
        if self.mlflow_log is None:
            return 0
        logged = 0
        for champion, challenger in sorted(self.current_pairs()):
            stats = await self.publisher.shadow_stats(champion, challenger)
            if not stats or not stats.get(SHADOW_RECORDS):
                continue
            try:
                await asyncio.to_thread(self.mlflow_log, champion, challenger, stats)
                logged += 1
            except Exception as exc:
                log.warning(
                    "shadow metrics not logged to MLflow",
                    champion=champion,
                    challenger=challenger,
                    error=str(exc),
                )
        return logged


def mlflow_metrics(stats: dict[str, int]) -> dict[str, float]:
    """The MLflow metrics of a pair's counters (accuracies only once feedback exists)."""
    records = stats.get(SHADOW_RECORDS, 0)
    out: dict[str, float] = {"shadow_records": float(records)}
    if records:
        out["shadow_agreement"] = stats.get(SHADOW_AGREE, 0) / records
    feedback = stats.get(SHADOW_FEEDBACK, 0)
    out["shadow_feedback_labels"] = float(feedback)
    if feedback:
        out["shadow_champion_accuracy"] = stats.get(SHADOW_CHAMPION_CORRECT, 0) / feedback
        out["shadow_challenger_accuracy"] = stats.get(SHADOW_CHALLENGER_CORRECT, 0) / feedback
    return out


def registry_mlflow_logger(settings: Settings) -> MlflowLogger:
    """An :data:`MlflowLogger` writing to the run that produced the challenger's registered version."""

    def log_pair(champion: str, challenger: str, stats: dict[str, int]) -> None:
        from mlflow.entities import Metric, RunTag

        from scoring.registry_uri import mlflow_client

        name, _, version = challenger.rpartition("/")
        if not name or not version.isdigit():
            raise ValueError(f"challenger {challenger!r} is not a registry version (NAME/VERSION)")
        client = mlflow_client(settings)
        run_id = client.get_model_version(name, version).run_id
        if not run_id:
            raise ValueError(f"challenger {challenger} has no run to log to")
        now_ms = int(time.time() * 1000)
        step = int(stats.get(SHADOW_RECORDS, 0))
        metrics = [Metric(key, value, now_ms, step) for key, value in mlflow_metrics(stats).items()]
        client.log_batch(run_id, metrics=metrics, tags=[RunTag("shadow.champion", champion)])
        log.info("shadow metrics logged to MLflow", champion=champion, challenger=challenger, run_id=run_id)

    return log_pair
