"""The loop every producer shares: fetch, validate, send, flush, then checkpoint.

A source yields :class:`Batch` objects: raw dicts bound for a topic plus a ``commit``
callback that persists the source's cursor. The runner validates every dict against
its wire model (invalid ones go to the dead-letter topic with the reason), sends the
valid ones through the idempotent :class:`~cryptopulse.kafka.EventProducer`, flushes,
and only after a clean flush calls ``commit``. That ordering is the whole delivery
guarantee: at-least-once with stable ``source_id`` keys, never a skipped item.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from cryptopulse.kafka import DeliveryError, EventProducer
from cryptopulse.settings import Settings
from producers.http import FetchError, Stopped
from producers.metrics import FAILED, LAST_SUCCESS, PRODUCED, SKIPPED
from schemas.events import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """One record to produce: its wire model, raw fields, topic and the field used as key."""

    model: type[Event]
    data: dict[str, Any]
    topic: str
    key_field: str = "source_id"


def _noop(consumed: int) -> None:
    return None


@dataclass
class Batch:
    """Records that share one checkpoint; ``commit(n)`` runs after the first n were flushed."""

    records: Iterable[Outgoing]
    commit: Callable[[int], None] = _noop
    label: str = ""


class Source(Protocol):
    """What the runner needs from a connector."""

    name: str
    interval_s: float

    def poll(self) -> Iterator[Batch]: ...

    def close(self) -> None: ...


@dataclass
class RunStats:
    """What one run did; returned to callers and tests."""

    cycles: int = 0
    produced: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    failed_cycles: int = 0


def skip(source: str, reason: str, count: int = 1) -> None:
    """Count an item deliberately not produced (removed, deleted, duplicate...)."""
    SKIPPED.labels(source, reason).inc(count)


def _dead_letter_id(data: dict[str, Any]) -> str | None:
    value = data.get("source_id")
    return value if isinstance(value, str) and 0 < len(value) <= 256 else None


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

    def _send(self, item: Outgoing) -> bool:
        try:
            record = item.model.model_validate(item.data)
        except ValidationError as exc:
            payload = json.dumps(item.data, default=str, ensure_ascii=False)
            self.producer.dead_letter(
                payload,
                reason="invalid_schema",
                detail=f"{item.model.__name__}: {exc}",
                source_id=_dead_letter_id(item.data),
                original_topic=item.topic,
            )
            FAILED.labels(self.source.name, "invalid_schema").inc()
            self.stats.dead_lettered += 1
            log.warning(
                "invalid record dead-lettered",
                extra={
                    "source": self.source.name,
                    "source_id": item.data.get("source_id"),
                    "errors": exc.error_count(),
                },
            )
            return False
        key = str(getattr(record, item.key_field))
        self.producer.send(item.topic, record, key=key)
        return True

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
        try:
            self.producer.flush()
        except DeliveryError:
            FAILED.labels(self.source.name, "delivery").inc()
            raise
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
