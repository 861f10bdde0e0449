"""Running a producer: the delivery loop, the source catalogue and the process entry point.

A source yields :class:`~producers.base.Batch` objects: raw dicts bound for a topic plus
a ``commit`` callback that persists the source's cursor. :class:`Runner` validates every
dict against its wire model (invalid ones go to the dead-letter topic with the reason),
sends the valid ones through the idempotent :class:`~core.kafka.EventProducer`,
flushes, and only after a clean flush calls ``commit``. That ordering is the whole
delivery guarantee: at-least-once with stable ``source_id`` keys, never a skipped item.

An item fails alone: one that does not validate (``invalid_schema``), that the client or
the broker refuses for its size (``record_too_large``) or whose handling raises anything
else (``unhandled_error``) goes to the dead-letter topic (payload capped) and the batch,
the other items and the other feeds carry on. Only a delivery failure of another kind
(the broker away) fails the cycle, so the cursor stays put and the items are sent again.

Entry points for the platform and the CLI:

* :func:`run` drives one source until SIGTERM/SIGINT (``python -m producers replay``);
* :func:`build_source` builds a connector without running it (tests, embedding).
"""

from __future__ import annotations

import json
import logging
import reprlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from pydantic import ValidationError

from core.kafka import DeliveryError, EventProducer, FailedDelivery, decode_key
from core.settings import Settings, get_settings
from producers.base import Batch, Outgoing, Source
from producers.http import FetchError, Stopped
from producers.metrics import FAILED, LAST_SUCCESS, PRODUCED
from schemas.events import DeadLetter
from schemas.topics import DEAD_LETTER

log = logging.getLogger(__name__)

SOURCES = ("reddit", "news", "prices", "replay")

REASON_INVALID_SCHEMA = "invalid_schema"
REASON_TOO_LARGE = "record_too_large"
REASON_UNHANDLED_ERROR = "unhandled_error"


@dataclass
class RunStats:
    """What one run did; returned to callers and tests."""

    cycles: int = 0
    produced: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    failed_cycles: int = 0


def _dead_letter_id(data: object) -> str | None:
    value = data.get("source_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 256 else None


def _payload_of(data: dict[str, Any]) -> str:
    """An item as text for its dead letter, even one JSON cannot encode (too deep, circular)."""
    try:
        return json.dumps(data, default=str, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        return reprlib.repr(data)


def _id_in(value: bytes) -> str | None:
    """The ``source_id`` of a serialized record, if it has a readable one."""
    try:
        return _dead_letter_id(json.loads(value))
    except (ValueError, RecursionError):
        return None


class Runner:
    """Drive one source against Kafka until stopped (or for a fixed number of cycles)."""

    def __init__(
        self,
        settings: Settings,
        source: Source,
        *,
        producer: EventProducer | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.stop = stop or threading.Event()
        self.producer = producer or EventProducer(settings, component=f"producer.{source.name}")
        self.stats = RunStats()

    def _dead_letter(
        self,
        payload: bytes | str,
        *,
        topic: str,
        reason: str,
        detail: str,
        source_id: str | None,
        key: str | None = None,
    ) -> None:
        """Send one failed item to the dead-letter topic (delivered by the batch's flush)."""
        letter = DeadLetter.for_payload(
            payload,
            reason=reason,
            detail=detail,
            component=self.producer.component,
            source_id=source_id,
            original_topic=topic,
            original_key=key,
        )
        self.producer.send(DEAD_LETTER.name(self.settings), letter)
        FAILED.labels(self.source.name, reason).inc()
        self.stats.dead_lettered += 1
        log.warning(
            "record dead-lettered",
            extra={
                "source": self.source.name,
                "source_id": source_id,
                "reason": reason,
                "detail": detail[:300],
            },
        )

    def _send(self, item: Outgoing) -> bool:
        """Validate and produce one item; False when it was dead-lettered instead."""
        try:
            record = item.model.model_validate(item.data)
            self.producer.send(item.topic, record, key=str(getattr(record, item.key_field)))
        except ValidationError as exc:
            reason, detail = REASON_INVALID_SCHEMA, f"{item.model.__name__}: {exc}"
        except KafkaException as exc:  # librdkafka refuses a record over message.max.bytes at once
            if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                raise
            reason, detail = REASON_TOO_LARGE, str(exc.args[0].str())
        except Exception as exc:
            log.exception("record failed", extra={"source": self.source.name})
            reason, detail = REASON_UNHANDLED_ERROR, f"{type(exc).__name__}: {exc}"
        else:
            return True
        self._dead_letter(
            _payload_of(item.data),
            topic=item.topic,
            reason=reason,
            detail=detail,
            source_id=_dead_letter_id(item.data),
        )
        return False

    def _flush(self) -> Counter[str]:
        """Flush; records the broker refused for their size are dead-lettered, per topic returned.

        The broker refuses a whole batch that is over its limit, so each refused record is
        sent again on its own: only a record still refused alone is too large. Any other
        delivery failure raises :class:`DeliveryError`.
        """
        try:
            self.producer.flush()
            return Counter()
        except DeliveryError as exc:
            refused = self._refused_for_size(exc)
        dead: Counter[str] = Counter()
        for failure in refused:
            key = decode_key(failure.key)
            self.producer.send_raw(failure.topic, failure.value, key=key)
            try:
                self.producer.flush()
            except DeliveryError as exc:
                self._refused_for_size(exc)
                self._dead_letter(
                    failure.value,
                    topic=failure.topic,
                    reason=REASON_TOO_LARGE,
                    detail=f"{len(failure.value)} bytes refused by the broker: {failure.error.str()}",
                    source_id=_id_in(failure.value),
                    key=key,
                )
                dead[failure.topic] += 1
        if dead:
            self.producer.flush()  # the dead letters
        return dead

    def _refused_for_size(self, exc: DeliveryError) -> list[FailedDelivery]:
        """The failures of ``exc`` when all are size refusals; otherwise ``exc`` is raised."""
        if exc.failures and all(failure.too_large for failure in exc.failures):
            return exc.failures
        FAILED.labels(self.source.name, "delivery").inc()
        raise exc

    def _run_batch(self, batch: Batch) -> None:
        consumed = 0
        per_topic: Counter[str] = Counter()
        stopped = False
        try:
            for item in batch.records:
                if self._send(item):
                    per_topic[item.topic] += 1
                consumed += 1
        except Stopped:
            stopped = True
        per_topic -= self._flush()
        if consumed or not stopped:
            batch.commit(consumed)
        for topic, count in per_topic.items():
            PRODUCED.labels(self.source.name, topic).inc(count)
            self.stats.produced[topic] += count
        LAST_SUCCESS.labels(self.source.name).set(time.time())
        if stopped:
            raise Stopped

    def run_cycle(self) -> bool:
        """One poll of the source; False when it failed (nothing past the failure committed)."""
        self.stats.cycles += 1
        try:
            for batch in self.source.poll():
                self._run_batch(batch)
                if self.stop.is_set():
                    raise Stopped
        except (Stopped, KeyboardInterrupt):
            raise
        except DeliveryError as exc:
            log.error(
                "delivery failed, cursor not advanced", extra={"source": self.source.name, "error": str(exc)}
            )
        except FetchError as exc:
            log.error(
                "fetch failed", extra={"source": self.source.name, "reason": exc.reason, "error": str(exc)}
            )
        except Exception:
            FAILED.labels(self.source.name, "error").inc()
            log.exception("cycle failed", extra={"source": self.source.name})
        else:
            return True
        self.stats.failed_cycles += 1
        return False

    def run(self, *, cycles: int | None = None) -> RunStats:
        """Poll every ``interval_s`` until stopped; always flushes and closes on the way out."""
        log.info("producer started", extra={"source": self.source.name})
        try:
            while not self.stop.is_set():
                self.run_cycle()
                if cycles is not None and self.stats.cycles >= cycles:
                    break
                if getattr(self.source, "finished", False):
                    break
                if self.stop.wait(self.source.interval_s):
                    break
        except Stopped:
            log.info("stop requested", extra={"source": self.source.name})
        finally:
            try:
                self.producer.flush()
            except DeliveryError as exc:
                log.error("final flush failed", extra={"source": self.source.name, "error": str(exc)})
            self.source.close()
            log.info(
                "producer stopped",
                extra={
                    "source": self.source.name,
                    "produced": dict(self.stats.produced),
                    "cycles": self.stats.cycles,
                },
            )
        return self.stats


class MultiSource:
    """Several sources behind one runner, each polled on its own interval (feeds + NewsAPI)."""

    def __init__(self, name: str, sources: list[Source]) -> None:
        self.name = name
        self.sources = sources
        self.interval_s = max(0.5, min(s.interval_s for s in sources) / 4) if sources else 1.0
        self._due = [0.0] * len(sources)

    def poll(self) -> Iterator[Batch]:
        for index, source in enumerate(self.sources):
            if time.monotonic() < self._due[index]:
                continue
            self._due[index] = time.monotonic() + source.interval_s
            try:
                yield from source.poll()
            except FetchError as exc:
                log.error("sub-source failed", extra={"source": source.name, "reason": exc.reason})

    def close(self) -> None:
        for source in self.sources:
            source.close()


def build_source(
    name: str, settings: Settings, *, stop: threading.Event | None = None, **kwargs: Any
) -> Source:
    """The connector for ``name`` (one of :data:`SOURCES`)."""
    if name == "reddit":
        from producers.reddit import RedditSource

        return RedditSource(settings, stop=stop, **kwargs)
    if name == "news":
        from producers.news import FeedSource, NewsApiSource

        feeds: Source = FeedSource(settings, stop=stop, **kwargs)
        if settings.producer.newsapi_key is None:
            return feeds
        return MultiSource("news", [feeds, NewsApiSource(settings, stop=stop, **kwargs)])
    if name == "prices":
        from producers.prices import PriceSource

        return PriceSource(settings, stop=stop, **kwargs)
    if name == "replay":
        from producers.replay import ReplaySource

        return ReplaySource(settings, stop=stop, **kwargs)
    raise ValueError(f"unknown source {name!r}; choose one of {', '.join(SOURCES)}")


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT set the stop event; the runner then flushes and exits cleanly."""

    def _handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal received, stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)


def run(
    name: str,
    settings: Settings | None = None,
    *,
    stop: threading.Event | None = None,
    cycles: int | None = None,
    serve_metrics: bool = True,
    handle_signals: bool = True,
    **kwargs: Any,
) -> RunStats:
    """Run one source as a long-lived process: metrics endpoint, signals, flush on exit."""
    from producers.metrics import serve_metrics as _serve

    settings = settings or get_settings()
    stop = stop or threading.Event()
    if handle_signals:
        install_signal_handlers(stop)
    if serve_metrics:
        _serve(settings.producer.metrics_port, settings.producer.metrics_host)
    source = build_source(name, settings, stop=stop, **kwargs)
    return Runner(settings, source, stop=stop).run(cycles=cycles)
