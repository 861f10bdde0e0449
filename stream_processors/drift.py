"""Prediction-drift monitor of the stream worker (design document 6.3).

Counts the scored posts of each model version in tumbling windows (``stream.drift_window_s``,
an hour by default): label counts and the calibrated-confidence histogram. Once a window
has closed and holds at least ``stream.drift_min_records`` posts, both are compared with
the model's reference distribution (its own predictions on the held-out test split,
stored in the artifact, :mod:`scoring.drift`) by the Population Stability Index. A PSI
above ``stream.drift_psi_threshold`` (0.25: a significant shift) raises a ``model_drift``
alert, once per (signal, model version, window). Models trained before references were
stored have none: they are not monitored, and the worker says so once. The score agent
tells the monitor each model it scores with (:meth:`DriftMonitor.follow`), so the monitor
knows every version's reference when their windows close.

Counts live in the worker's memory, like the data-quality monitor's: a restart judges the
current window on what the new process saw, and several workers judge their own partitions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from schemas.events import Alert, AlertSeverity, ScoredPost, utc_now
from schemas.redis_keys import WINDOW_SECONDS
from scoring.drift import CONFIDENCE_EDGES, ReferenceDistribution, confidence_bin
from scoring.holder import ScoringRuntime
from scoring.labels import LABEL_TO_ID, LABELS
from stream_processors.windows import TumblingWindows

log = structlog.get_logger(__name__)


@dataclass
class _Counts:
    labels: list[int] = field(default_factory=lambda: [0] * len(LABELS))
    confidence: list[int] = field(default_factory=lambda: [0] * (len(CONFIDENCE_EDGES) - 1))

    @property
    def total(self) -> int:
        return sum(self.labels)


@dataclass(frozen=True)
class DriftReport:
    """One model version's closed window: posts seen and the PSI of each signal."""

    model_version: str
    window_start: datetime
    window_end: datetime
    records: int
    psi: dict[str, float]
    breaches: tuple[str, ...]


class DriftMonitor:
    """Per (model version, window) label and confidence counts, judged once the window closes."""

    def __init__(self, window_s: int = 3600, min_records: int = 500, threshold: float = 0.25) -> None:
        self.window_s = window_s
        self.min_records = min_records
        self.threshold = threshold
        self._windows = TumblingWindows(window_s, _Counts)
        self._references: dict[str, ReferenceDistribution | None] = {}  # model version -> reference

    def follow(self, runtime: ScoringRuntime) -> None:
        """Judge the posts of ``runtime``'s version against the reference it carries (none: its
        posts are not judged); a version is looked at once, the first time it scores."""
        version = str(runtime.model_version)
        if version not in self._references:
            self._references[version] = getattr(runtime, "reference", None)
            if self._references[version] is None:
                log.info(
                    "model has no reference distribution: prediction drift not monitored", version=version
                )

    def record(self, posts: Iterable[ScoredPost], *, now: float) -> None:
        for post in posts:
            counts = self._windows.at(post.model_version, now)
            counts.labels[LABEL_TO_ID[post.label.value]] += 1
            counts.confidence[confidence_bin(post.confidence)] += 1

    def closed(self, now: float) -> list[DriftReport]:
        """Reports of the windows that ended before ``now`` (each once) for versions with a
        reference and enough posts; other closed windows are dropped."""
        reports = []
        for version, start, end, counts in self._windows.pop_closed(now):
            reference = self._references.get(version)
            if reference is None or counts.total < self.min_records:
                continue
            psi = reference.drift(counts.labels, counts.confidence)
            reports.append(
                DriftReport(
                    model_version=version,
                    window_start=start,
                    window_end=end,
                    records=counts.total,
                    psi=psi,
                    breaches=tuple(signal for signal, value in psi.items() if value > self.threshold),
                )
            )
        return reports

    def alerts(self, report: DriftReport) -> list[Alert]:
        """One ``model_drift`` alert per drifted signal; critical at twice the threshold."""
        window = next((w for w, seconds in WINDOW_SECONDS.items() if seconds == self.window_s), None)
        what = {
            "labels": "the mix of negative/neutral/positive predictions",
            "confidence": "the confidence of its predictions",
        }
        alerts = []
        for signal in report.breaches:
            value = report.psi[signal]
            alerts.append(
                Alert(
                    source_id=(
                        f"model_drift:{signal}:{report.model_version}:{report.window_start.isoformat()}"
                    ),
                    event_time=report.window_end,
                    ingest_time=utc_now(),
                    kind="model_drift",
                    severity=AlertSeverity.CRITICAL if value >= 2 * self.threshold else AlertSeverity.WARNING,
                    window=window,
                    value=value,
                    threshold=self.threshold,
                    message=(
                        f"model {report.model_version}: {what[signal]} drifted from its test-split reference "
                        f"(PSI {value:.2f} > {self.threshold:.2f}) over {report.records} posts between "
                        f"{report.window_start:%H:%M} and {report.window_end:%H:%M} UTC; validate the model"
                    ),
                )
            )
        return alerts
