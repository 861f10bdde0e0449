"""The ``model_drift`` timer: judges the score agent's closed prediction-drift windows.

The score agent counts every scored post in a :class:`~stream_processors.drift.DriftMonitor`
and tells it each model it scores with; every 30 s this timer compares the windows that
have closed with their model's reference (metrics, log) and raises each breach once as a
``model_drift`` alert.
"""

from __future__ import annotations

import time

import faust
import structlog

from schemas.events import Alert
from stream_processors import metrics as m
from stream_processors.drift import DriftMonitor
from stream_processors.monitors.alerts import AlertSender, never_fail

log = structlog.get_logger(__name__)


class DriftCheck:
    """Reports and alerts of the prediction-drift windows the score agent fills."""

    def __init__(self, monitor: DriftMonitor, alerts: AlertSender) -> None:
        self.monitor = monitor
        self.alerts = alerts

    def register(self, app: faust.App) -> None:
        app.timer(interval=30.0, name="model_drift", on_leader=False)(self.tick)

    async def tick(self) -> None:
        await never_fail(self.check(), "model drift check")

    async def check(self, now: float | None = None) -> list[Alert]:
        """Judge closed drift windows against each model's reference; raise each breach once."""
        raised: list[Alert] = []
        for report in self.monitor.closed(time.time() if now is None else now):
            for signal, value in report.psi.items():
                m.DRIFT_PSI.labels(report.model_version, signal).set(value)
            log.info(
                "model drift window",
                version=report.model_version,
                records=report.records,
                psi=report.psi,
                breaches=list(report.breaches),
            )
            raised.extend([a for a in self.monitor.alerts(report) if await self.alerts.raise_once(a)])
        return raised
