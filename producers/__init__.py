"""Producers: Reddit, news, prices and the offline replay, each into its raw Kafka topic.

Entry points for the platform and the CLI:

* :func:`run` drives one source until SIGTERM/SIGINT (``python -m producers replay``);
* :func:`build_source` builds a connector without running it (tests, embedding).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from cryptopulse.settings import Settings, get_settings
from producers.base import Batch, Runner, RunStats, Source
from producers.http import FetchError

log = logging.getLogger(__name__)

SOURCES = ("reddit", "news", "prices", "replay")


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
        _serve(settings.producer.metrics_port)
    source = build_source(name, settings, stop=stop, **kwargs)
    return Runner(settings, source, stop=stop).run(cycles=cycles)


__all__ = ["SOURCES", "MultiSource", "RunStats", "build_source", "install_signal_handlers", "run"]
