"""Data-quality monitor: per-source shares of the design document's validation rules.

The clean agent already gives every raw record exactly one outcome (a clean post or a
dead letter with a reason). This module counts those outcomes per source in tumbling
windows and, once a window has closed, compares each rule's failure share with its
threshold (docs/stream-processing.md, "Data quality"):

| rule | failing records | threshold (share that may fail) |
|---|---|---|
| completeness | empty or placeholder text | 5 % |
| validity | malformed JSON, wrong schema | 1 % |
| length | too short (dead letter) or truncated (flag) | 10 % |
| language | non-English | 5 % |
| uniqueness | duplicate source id or content | 5 % |

A breach becomes a ``data_quality`` :class:`~schemas.events.Alert` whose ``source_id``
is ``data_quality:{rule}:{source}:{window_start}``, so it is raised once however many
workers or restarts see it. Windows with fewer than ``min_records`` records are not
judged: three bad records out of ten say nothing about a feed.

Counts live in the worker's memory: a restart loses the current window's counts (the
window is then judged on what the restarted worker saw), and with several workers each
judges the partitions it owns. Both are acceptable for monitoring; the dead letters
themselves are the durable record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.events import Alert, AlertSeverity, DataQualityReport, QualityFlag, utc_now
from schemas.redis_keys import WINDOW_SECONDS
from stream_processors.cleaning import (
    REASON_DUPLICATE_CONTENT,
    REASON_DUPLICATE_ID,
    REASON_EMPTY_TEXT,
    REASON_INVALID_SCHEMA,
    REASON_MALFORMED_JSON,
    REASON_NON_ENGLISH,
    REASON_TOO_SHORT,
)
from stream_processors.windows import TumblingWindows


@dataclass(frozen=True)
class QualityRule:
    """One validation rule: which outcomes fail it and the share that may fail."""

    name: str
    description: str
    reasons: frozenset[str]
    flags: frozenset[str] = frozenset()
    max_share: float = 0.05


RULES: tuple[QualityRule, ...] = (
    QualityRule("completeness", "content empty or missing", frozenset({REASON_EMPTY_TEXT}), max_share=0.05),
    QualityRule(
        "validity",
        "malformed JSON or wrong schema",
        frozenset({REASON_MALFORMED_JSON, REASON_INVALID_SCHEMA}),
        max_share=0.01,
    ),
    QualityRule(
        "length",
        "outside 10-1000 characters",
        frozenset({REASON_TOO_SHORT}),
        frozenset({QualityFlag.TRUNCATED.value}),
        max_share=0.10,
    ),
    QualityRule("language", "not English", frozenset({REASON_NON_ENGLISH}), max_share=0.05),
    QualityRule(
        "uniqueness",
        "duplicate source id or content",
        frozenset({REASON_DUPLICATE_ID, REASON_DUPLICATE_CONTENT}),
        max_share=0.05,
    ),
)


@dataclass
class _WindowCounts:
    total: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)


class QualityMonitor:
    """Counts outcomes per (source, window) and judges windows once they have closed."""

    def __init__(
        self, window_s: int = 300, min_records: int = 50, rules: Iterable[QualityRule] = RULES
    ) -> None:
        self.window_s = window_s
        self.min_records = min_records
        self.rules = tuple(rules)
        self._windows = TumblingWindows(window_s, _WindowCounts)

    def record(self, source: str, reason: str | None, flags: Iterable[str] = (), *, now: float) -> None:
        """Count one raw record's outcome: ``reason`` of its dead letter, or None when clean."""
        counts = self._windows.at(source, now)
        counts.total += 1
        if reason is not None:
            counts.reasons[reason] += 1
        for flag in flags:
            counts.flags[str(flag)] += 1

    def closed(self, now: float) -> list[DataQualityReport]:
        """Reports of every window that ended before ``now`` (each returned once)."""
        reports = []
        for source, start, end, counts in self._windows.pop_closed(now):
            shares = {
                rule.name: round(
                    (sum(counts.reasons[r] for r in rule.reasons) + sum(counts.flags[f] for f in rule.flags))
                    / counts.total,
                    6,
                )
                for rule in self.rules
            }
            judged = counts.total >= self.min_records
            reports.append(
                DataQualityReport(
                    source=source,
                    window_start=start,
                    window_end=end,
                    records=counts.total,
                    shares=shares,
                    thresholds={rule.name: rule.max_share for rule in self.rules},
                    breaches=[r.name for r in self.rules if judged and shares[r.name] > r.max_share],
                    judged=judged,
                    # a record fails at most one dead-letter rule; only flags can overlap
                    quality_score=round(max(0.0, 1.0 - sum(shares.values())), 6),
                )
            )
        return reports

    def alerts(self, report: DataQualityReport) -> list[Alert]:
        """One ``data_quality`` alert per breached rule; critical when half the records fail."""
        by_name = {rule.name: rule for rule in self.rules}
        start, end = report.window_start, report.window_end
        window = next((w for w, seconds in WINDOW_SECONDS.items() if seconds == self.window_s), None)
        alerts = []
        for name in report.breaches:
            rule, share = by_name[name], report.shares[name]
            alerts.append(
                Alert(
                    source_id=f"data_quality:{name}:{report.source}:{start.isoformat()}",
                    event_time=end,
                    ingest_time=utc_now(),
                    kind="data_quality",
                    severity=AlertSeverity.CRITICAL if share >= 0.5 else AlertSeverity.WARNING,
                    window=window,
                    value=share,
                    threshold=rule.max_share,
                    message=(
                        f"{report.source}: {share:.1%} of {report.records} records failed the {name} rule "
                        f"({rule.description}) between {start:%H:%M} and {end:%H:%M} UTC; "
                        f"at most {rule.max_share:.0%} may"
                    ),
                )
            )
        return alerts
