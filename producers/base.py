"""What a producer source is: the records it hands over and the parts every connector shares.

A source yields :class:`Batch` objects (records bound for topics plus the checkpoint
that covers them) to :class:`producers.runner.Runner`, which owns delivery. The
connectors build on :class:`CheckpointedSource` (settings and the persisted cursor) and,
when they poll an HTTP API, :class:`HttpSource` (plus their raw topic and a retrying
:class:`~producers.http.Fetcher`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from core.settings import Settings
from producers.http import Fetcher
from producers.metrics import SKIPPED
from producers.state import StateStore
from schemas.events import Event
from schemas.topics import TopicSpec


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


def skip(source: str, reason: str, count: int = 1) -> None:
    """Count an item deliberately not produced (removed, deleted, duplicate...)."""
    SKIPPED.labels(source, reason).inc(count)


class CheckpointedSource:
    """Settings, the shutdown event and the persisted checkpoint of one connector.

    ``state_defaults`` fills keys a first run (no state file yet) does not have.
    """

    name: str
    interval_s: float

    def __init__(
        self,
        settings: Settings,
        *,
        stop: threading.Event | None = None,
        state_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.producer
        self.stop = stop or threading.Event()
        self.store = StateStore.for_source(settings, self.name)
        self.state: dict[str, Any] = self.store.load()
        for key, value in (state_defaults or {}).items():
            self.state.setdefault(key, value)

    def close(self) -> None:
        return None


class HttpSource(CheckpointedSource):
    """A connector polling an HTTP API into one raw topic every ``interval_s``."""

    def __init__(
        self,
        settings: Settings,
        topic: TopicSpec,
        *,
        interval_s: float,
        stop: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
        state_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(settings, stop=stop, state_defaults=state_defaults)
        self.interval_s = interval_s
        self.topic = topic.name(settings)
        self.fetcher = Fetcher(settings, self.name, stop=self.stop, transport=transport, headers=headers)

    def close(self) -> None:
        self.fetcher.close()
