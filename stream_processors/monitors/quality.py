"""The ``data_quality`` timer: judges the clean agent's closed data-quality windows.

The clean agent counts every raw record's outcome in a :class:`~stream_processors.quality.QualityMonitor`;
every 10 s this timer reports the windows that have closed (metrics, log, Redis for the API
and dashboard) and raises each breach once as a ``data_quality`` alert.
"""

from __future__ import annotations

import time

import faust
import structlog

from schemas.events import Alert
from stream_processors import metrics as m
from stream_processors.live import LivePublisher
from stream_processors.monitors.alerts import AlertSender, never_fail
from stream_processors.quality import QualityMonitor

log = structlog.get_logger(__name__)


class QualityCheck:
    """Reports and alerts of the data-quality windows the clean agent fills."""

    def __init__(self, monitor: QualityMonitor, publisher: LivePublisher, alerts: AlertSender) -> None:
        self.monitor = monitor
        self.publisher = publisher
        self.alerts = alerts

    def register(self, app: faust.App) -> None:
        app.timer(interval=10.0, name="data_quality", on_leader=False)(self.tick)

    async def tick(self) -> None:
        await never_fail(self.check(), "data quality check")

    async def check(self, now: float | None = None) -> list[Alert]:
        """Judge the data-quality windows that have closed; raise each breach once."""
        raised: list[Alert] = []
        for report in self.monitor.closed(time.time() if now is None else now):
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
            raised.extend([a for a in self.monitor.alerts(report) if await self.alerts.raise_once(a)])
        return raised
