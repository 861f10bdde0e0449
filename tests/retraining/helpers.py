"""Helpers of the retraining tests: settings with a home of their own, feedback and alerts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.kafka import EventProducer
from core.settings import Settings
from schemas.events import Alert, AlertSeverity, Feedback, SentimentLabel
from schemas.topics import ALERTS, FEEDBACK

_ids = itertools.count()


def with_learning(settings: Settings, home: Path, **learning: Any) -> Settings:
    """``settings`` with its own home (the state file lives there) and learning overrides."""
    return settings.model_copy(
        update={"home": home, "learning": settings.learning.model_copy(update=learning)}
    )


def send_feedback(settings: Settings, count: int) -> None:
    """``count`` feedback labels of distinct posts, flushed."""
    with EventProducer(settings, component="test") as producer:
        for _ in range(count):
            n = next(_ids)
            record = Feedback(
                source_id=f"t3_fb{n}",
                event_time=datetime.now(UTC),
                label=SentimentLabel.POSITIVE,
                text=f"bitcoin looks strong today {n}",
                annotator="test",
            )
            producer.send(FEEDBACK.name(settings), record, key=record.source_id)


def drift_alert(version: str, window_start: datetime, window_end: datetime, signal: str = "labels") -> Alert:
    return Alert(
        source_id=f"model_drift:{signal}:{version}:{window_start.isoformat()}",
        event_time=window_end,
        kind="model_drift",
        severity=AlertSeverity.WARNING,
        message="drifted",
        value=0.4,
        threshold=0.25,
    )


def send_alerts(settings: Settings, alerts: list[Alert]) -> None:
    with EventProducer(settings, component="test") as producer:
        for alert in alerts:
            producer.send(ALERTS.name(settings), alert, key="")


def wait_for_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Until the broker serves the new test topics' offsets (a fresh topic answers "not leader"
    for a moment): a baseline taken before then would not know the topics' ends."""
    import time

    from retraining.triggers import topic_ends

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            for spec in (FEEDBACK, ALERTS):
                topic_ends(settings, spec.name(settings))
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
