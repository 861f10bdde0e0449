"""The ``model_drift`` timer: fetches input references and judges the closed drift windows.

The score agent counts every scored post in a :class:`~stream_processors.drift.DriftMonitor`
and tells it each model it scores with; every 30 s this timer fetches the input references of
newly seen versions (in a thread: it talks to the registry), compares the windows that have
closed with their model's references (metrics, log) and raises each breach once as a
``model_drift`` alert.

Gauges (last closed window): ``cryptopulse_stream_drift_psi`` per version and prediction
signal (all sources), and per version, source and input feature
``cryptopulse_stream_drift_feature_psi``, ``..._feature_statistic`` (KS D or chi-square) and
``..._feature_p_value``; ``cryptopulse_stream_drift_source_status`` says per version and
source whether it was judged (1 drift, 0 ok, -1 no reference, -2 too few posts).
"""

from __future__ import annotations

import asyncio
import time

import faust
import structlog
from prometheus_client import Gauge

from schemas.events import Alert
from scoring.drift import SourceStatus
from stream_processors import metrics as m
from stream_processors.drift import DriftMonitor, DriftReport
from stream_processors.monitors.alerts import AlertSender, never_fail

log = structlog.get_logger(__name__)

FEATURE_PSI = Gauge(
    "cryptopulse_stream_drift_feature_psi",
    "PSI of an input feature of a source against the version's reference (last closed window)",
    ["model_version", "source", "feature"],
)
FEATURE_STATISTIC = Gauge(
    "cryptopulse_stream_drift_feature_statistic",
    "KS D (continuous) or chi-square statistic (categorical) of an input feature (last closed window)",
    ["model_version", "source", "feature", "test"],
)
FEATURE_P_VALUE = Gauge(
    "cryptopulse_stream_drift_feature_p_value",
    "p-value of an input feature's KS / chi-square test (last closed window)",
    ["model_version", "source", "feature"],
)
SOURCE_STATUS = Gauge(
    "cryptopulse_stream_drift_source_status",
    "input-drift verdict of a source: 1 drift, 0 ok, -1 no reference, -2 too few posts (last closed window)",
    ["model_version", "source"],
)
_STATUS_VALUE = {
    SourceStatus.DRIFT: 1,
    SourceStatus.OK: 0,
    SourceStatus.NO_REFERENCE: -1,
    SourceStatus.INSUFFICIENT: -2,
}


class DriftCheck:
    """Reports and alerts of the drift windows the score agent fills."""

    def __init__(self, monitor: DriftMonitor, alerts: AlertSender) -> None:
        self.monitor = monitor
        self.alerts = alerts

    def register(self, app: faust.App) -> None:
        app.timer(interval=30.0, name="model_drift", on_leader=False)(self.tick)

    async def tick(self) -> None:
        await never_fail(self.check(), "model drift check")

    async def check(self, now: float | None = None) -> list[Alert]:
        """Fetch due references, judge closed drift windows, raise each breach once."""
        await asyncio.to_thread(self.monitor.load_references)
        raised: list[Alert] = []
        for report in self.monitor.closed(time.time() if now is None else now):
            export_metrics(report)
            log.info(
                "model drift window",
                version=report.model_version,
                records=report.records,
                psi=report.psi,
                breaches=list(report.breaches),
                sources={v.source: v.summary() for v in report.sources},
                source_mix=None if report.source_mix is None else report.source_mix.describe(),
            )
            raised.extend([a for a in self.monitor.alerts(report) if await self.alerts.raise_once(a)])
        return raised


def export_metrics(report: DriftReport) -> None:
    """Set the gauges of one closed window (prediction PSI, per-source feature statistics)."""
    version = report.model_version
    for signal, value in report.psi.items():
        m.DRIFT_PSI.labels(version, signal).set(value)
    for verdict in report.sources:
        SOURCE_STATUS.labels(version, verdict.source).set(_STATUS_VALUE[verdict.status])
        for feature in verdict.features:
            FEATURE_PSI.labels(version, verdict.source, feature.feature).set(feature.psi)
            FEATURE_STATISTIC.labels(version, verdict.source, feature.feature, feature.test).set(
                feature.statistic
            )
            FEATURE_P_VALUE.labels(version, verdict.source, feature.feature).set(feature.p_value)
    mix = report.source_mix
    if mix is not None:
        FEATURE_PSI.labels(version, "all", mix.feature).set(mix.psi)
        FEATURE_STATISTIC.labels(version, "all", mix.feature, mix.test).set(mix.statistic)
        FEATURE_P_VALUE.labels(version, "all", mix.feature).set(mix.p_value)
