"""Drift monitor of the stream worker: prediction drift and input drift, per source (design 6.3).

Counts the scored posts of each model version in tumbling windows (``stream.drift_window_s``,
an hour by default). Per post the cost is a few counter increments and appends: the text's
length, its out-of-vocabulary rate and bag-of-words distance (:mod:`scoring.drift`), its
label, confidence and first coin, kept per source. Everything else runs once a window has
closed (:meth:`DriftMonitor.closed`):

* Prediction drift (all sources): label counts and the confidence histogram against the
  artifact's test-split :class:`~scoring.drift.ReferenceDistribution`, by PSI, as before.
* Input drift (per source): each source's window against the same source's part of the
  version's :class:`~scoring.drift.InputReference` (validation split, attached in the
  registry by ``model_export.reference``), by PSI with the KS test (continuous features) or
  the chi-square test (categorical ones). A feature drifts when PSI exceeds
  ``stream.drift_psi_threshold`` and the p-value is below ``stream.drift_p_value``. A source
  without a reference is reported as ``no_reference``, never flagged; a source window with
  fewer than ``stream.drift_min_records`` posts is not judged.
* Source mix (all sources): the window's posts per source against the previous judged
  window of the same version (chi-square + PSI). The training data's mix of datasets says
  nothing about what the feeds should deliver, so the baseline is the recent live mix: a
  feed that stops or floods is caught, a steady Reddit-only feed is not.

Each drifted signal raises one ``model_drift`` alert, once per (signal, version, window); its
id is ``model_drift:SIGNAL:VERSION:WINDOW_START`` with SIGNAL ``labels``/``confidence`` for
prediction drift and ``FEATURE@SOURCE`` for input drift, so the retraining trigger reads the
version where it always did. The score agent tells the monitor each model it scores with
(:meth:`DriftMonitor.follow`); the version's input reference is fetched off the event loop by
the ``model_drift`` timer (:meth:`DriftMonitor.load_references`), and posts scored before it
arrived are judged on the features that need no reference (length, label, confidence, coin).

Counts live in the worker's memory, like the data-quality monitor's: a restart judges the
current window on what the new process saw, and several workers judge their own partitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from schemas.events import Alert, AlertSeverity, ScoredPost, utc_now
from schemas.redis_keys import WINDOW_SECONDS
from scoring.drift import (
    CONFIDENCE_EDGES,
    FEATURE_DESCRIPTIONS,
    MIN_REFERENCE_ROWS,
    DriftVerdict,
    FeatureDrift,
    InputReference,
    LiveSample,
    ReferenceDistribution,
    SourceStatus,
    compare_categorical,
    confidence_bin,
    judge_source,
    post_features,
)
from scoring.holder import ScoringRuntime
from scoring.labels import LABEL_TO_ID, LABELS
from stream_processors.windows import TumblingWindows

if TYPE_CHECKING:
    from core.settings import Settings

log = structlog.get_logger(__name__)

ReferenceLoader = Callable[[str], InputReference | None]
"""Version label (``NAME/VERSION``) -> its input reference, None when it has none (blocking)."""
RETRY_S = 300.0
"""A reference that could not be fetched (registry away) is asked for again after this long."""
SOURCE_MIX = "source_mix"


@dataclass
class _Counts:
    labels: list[int] = field(default_factory=lambda: [0] * len(LABELS))
    confidence: list[int] = field(default_factory=lambda: [0] * (len(CONFIDENCE_EDGES) - 1))
    sources: dict[str, LiveSample] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.labels)


@dataclass(frozen=True)
class DriftReport:
    """One model version's closed window: prediction PSI (all sources), input verdicts per source."""

    model_version: str
    window_start: datetime
    window_end: datetime
    records: int
    psi: dict[str, float]
    breaches: tuple[str, ...]
    sources: tuple[DriftVerdict, ...] = ()
    source_mix: FeatureDrift | None = None


def registry_reference_loader(settings: Settings) -> ReferenceLoader:
    """A :data:`ReferenceLoader` reading the reference attached to a registered version (the
    :data:`~scoring.drift.REFERENCE_TAG` tag names a run artifact). Labels that are not
    ``NAME/NUMBER`` (a model loaded from a directory) and versions the registry does not know
    have none; any other registry error propagates, so the monitor retries later."""

    def load(label: str) -> InputReference | None:
        from mlflow.exceptions import MlflowException

        from model_export.reference import reference_of
        from scoring.registry_uri import mlflow_client

        name, _, number = label.rpartition("/")
        if not name or not number.isdigit():
            return None
        try:
            mv = mlflow_client(settings).get_model_version(name, number)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None  # not a version of this registry: nothing to fetch, ever
            raise  # the registry is away or failing: the caller retries later
        return reference_of(settings, mv)

    return load


class DriftMonitor:
    """Per (model version, window) counts, per source inside; judged once the window closes."""

    def __init__(
        self,
        window_s: int = 3600,
        min_records: int = 500,
        threshold: float = 0.25,
        *,
        p_value: float = 0.01,
        min_reference: int = MIN_REFERENCE_ROWS,
        reference_loader: ReferenceLoader | None = None,
        max_values: int = 20_000,
    ) -> None:
        self.window_s = window_s
        self.min_records = min_records
        self.threshold = threshold
        self.p_value = p_value
        self.min_reference = min_reference
        self.max_values = max_values
        self._loader = reference_loader
        self._windows = TumblingWindows(window_s, _Counts)
        self._references: dict[str, ReferenceDistribution | None] = {}  # model version -> reference
        self._inputs: dict[str, InputReference | None] = {}  # model version -> input reference
        self._pending: dict[str, float] = {}  # versions whose input reference is due: -> next attempt
        self._last_mix: dict[str, dict[str, int]] = {}  # model version -> last judged source mix

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftMonitor:
        """The worker's monitor: thresholds from ``settings.stream``, references from the registry."""
        stream = settings.stream
        return cls(
            stream.drift_window_s,
            stream.drift_min_records,
            stream.drift_psi_threshold,
            p_value=stream.drift_p_value,
            min_reference=stream.drift_min_reference,
            reference_loader=registry_reference_loader(settings),
        )

    def follow(self, runtime: ScoringRuntime) -> None:
        """Judge the posts of ``runtime``'s version against the references it has (none: only
        what needs none); a version is looked at once, the first time it scores."""
        version = str(runtime.model_version)
        if version in self._references:
            return
        self._references[version] = getattr(runtime, "reference", None)
        if self._references[version] is None:
            log.info("model has no test-split reference: prediction PSI not monitored", version=version)
        if self._loader is not None:
            self._pending[version] = 0.0  # fetched by the next load_references(), off the event loop
        else:
            self._inputs[version] = None

    def load_references(self, now: float | None = None) -> None:
        """Fetch the input references of newly followed versions (blocking: run it in a thread)."""
        now = time.time() if now is None else now
        for version, due in list(self._pending.items()):
            if due > now or self._loader is None:
                continue
            try:
                reference = self._loader(version)
            except Exception as exc:  # registry away: try again later, never stop the worker
                self._pending[version] = now + RETRY_S
                log.warning("cannot fetch input reference; retrying", version=version, error=str(exc))
                continue
            del self._pending[version]
            self._inputs[version] = reference
            if reference is None:
                log.info(
                    "model has no input reference: input drift reported as no_reference "
                    "(cryptopulse model reference --all-missing attaches one)",
                    version=version,
                )
            else:
                log.info("input reference loaded", version=version, sources=sorted(reference.sources))

    def record(self, posts: Iterable[ScoredPost], *, now: float) -> None:
        for post in posts:
            counts = self._windows.at(post.model_version, now)
            counts.labels[LABEL_TO_ID[post.label.value]] += 1
            counts.confidence[confidence_bin(post.confidence)] += 1
            source = post.source.value
            sample = counts.sources.get(source)
            if sample is None:
                sample = counts.sources[source] = LiveSample(self.max_values)
            reference = self._inputs.get(post.model_version)
            sample.add(
                *post_features(
                    post.text,
                    post.coins,
                    post.label.value,
                    post.confidence,
                    reference.for_source(source) if reference is not None else None,
                    reference.vocabulary if reference is not None else None,
                )
            )

    def closed(self, now: float) -> list[DriftReport]:
        """Reports of the windows that ended before ``now`` (each once). Prediction PSI needs the
        test-split reference and ``min_records`` posts; every source gets a verdict, ``ok``,
        ``drift``, ``no_reference`` or ``insufficient``."""
        reports = []
        for version, start, end, counts in self._windows.pop_closed(now):
            reference = self._references.get(version)
            psi: dict[str, float] = {}
            if reference is not None and counts.total >= self.min_records:
                psi = reference.drift(counts.labels, counts.confidence)
            inputs = self._inputs.get(version)
            verdicts = tuple(
                judge_source(
                    source,
                    inputs.for_source(source) if inputs is not None else None,
                    sample,
                    min_records=self.min_records,
                    psi_threshold=self.threshold,
                    alpha=self.p_value,
                    min_reference=self.min_reference,
                )
                for source, sample in sorted(counts.sources.items())
            )
            reports.append(
                DriftReport(
                    model_version=version,
                    window_start=start,
                    window_end=end,
                    records=counts.total,
                    psi=psi,
                    breaches=tuple(signal for signal, value in psi.items() if value > self.threshold),
                    sources=verdicts,
                    source_mix=self._source_mix(version, counts),
                )
            )
        return reports

    def _source_mix(self, version: str, counts: _Counts) -> FeatureDrift | None:
        """This window's posts per source against the previous judged window of ``version``."""
        if counts.total < self.min_records:
            return None
        mix = {source: sample.n for source, sample in counts.sources.items()}
        baseline = self._last_mix.get(version)
        self._last_mix[version] = mix
        if baseline is None:
            return None
        return compare_categorical(
            SOURCE_MIX, baseline, mix, psi_threshold=self.threshold, alpha=self.p_value
        )

    def alerts(self, report: DriftReport) -> list[Alert]:
        """One ``model_drift`` alert per drifted signal; critical at twice the threshold."""
        what = {
            "labels": "the mix of negative/neutral/positive predictions",
            "confidence": "the confidence of its predictions",
        }
        span = f"between {report.window_start:%H:%M} and {report.window_end:%H:%M} UTC"
        alerts = []
        for signal in report.breaches:
            value = report.psi[signal]
            alerts.append(
                self._alert(
                    report,
                    signal,
                    value,
                    f"model {report.model_version}: {what[signal]} drifted from its test-split reference "
                    f"(PSI {value:.2f} > {self.threshold:.2f}) over {report.records} posts {span}; "
                    "validate the model",
                )
            )
        for verdict in report.sources:
            for feature in verdict.drifted:
                alerts.append(
                    self._alert(
                        report,
                        f"{feature.feature}@{verdict.source}",
                        feature.psi,
                        f"model {report.model_version}, source {verdict.source}: "
                        f"{FEATURE_DESCRIPTIONS[feature.feature]} drifted from its validation-split "
                        f"reference (PSI {feature.psi:.2f} > {self.threshold:.2f}; {_test(feature)}) over "
                        f"{verdict.records} posts {span}",
                    )
                )
        mix = report.source_mix
        if mix is not None and mix.drifted:
            alerts.append(
                self._alert(
                    report,
                    f"{SOURCE_MIX}@all",
                    mix.psi,
                    f"model {report.model_version}: the source mix moved from the previous window's "
                    f"(PSI {mix.psi:.2f} > {self.threshold:.2f}; {_test(mix)}) over {report.records} "
                    f"posts {span}; check the producers",
                )
            )
        return alerts

    def _alert(self, report: DriftReport, signal: str, value: float, message: str) -> Alert:
        window = next((w for w, seconds in WINDOW_SECONDS.items() if seconds == self.window_s), None)
        return Alert(
            source_id=f"model_drift:{signal}:{report.model_version}:{report.window_start.isoformat()}",
            event_time=report.window_end,
            ingest_time=utc_now(),
            kind="model_drift",
            severity=AlertSeverity.CRITICAL if value >= 2 * self.threshold else AlertSeverity.WARNING,
            window=window,
            value=value,
            threshold=self.threshold,
            message=message[:2000],
        )


def _test(feature: FeatureDrift) -> str:
    if feature.test == "ks":
        return f"KS D={feature.statistic:.3f}, p={feature.p_value:.2g}"
    return f"chi-square {feature.statistic:.1f}, p={feature.p_value:.2g}"


__all__ = ["DriftMonitor", "DriftReport", "ReferenceLoader", "SourceStatus", "registry_reference_loader"]
