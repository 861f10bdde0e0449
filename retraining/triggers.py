"""When to retrain: the schedule, new feedback labels and sustained drift, with their state.

The decision is pure (:func:`decide`), so it is tested without a clock or a broker; the
inputs come from small readers (Kafka watermarks of the feedback topic, the model-drift
alerts since a cursor) and from :class:`RetrainState`.

The state is a JSON file, ``settings.home / "retraining" / "state.json"``, written
atomically (temporary file + rename). Not a Redis hash, because Redis is a cache here (it may
be flushed, and its key schema belongs to another package) and a lost state would either
forget pending labels or re-fire every trigger at once; not MLflow experiment tags, because
the scheduler must keep working, and keep counting, while MLflow is away. One scheduler per
home owns the file (the run lock in :mod:`retraining.service` makes sure of it).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog
from croniter import croniter
from pydantic import BaseModel, Field, ValidationError

if TYPE_CHECKING:
    from core.settings import LearningSettings, Settings
    from schemas.events import Alert

log = structlog.get_logger(__name__)

MISFIRE_GRACE = timedelta(hours=1)
"""A scheduled run missed by more than this (the service was down at the time) is skipped,
not run late: a machine started on a Monday afternoon must not begin a training run at once."""
FAILURE_BACKOFF = timedelta(hours=1)
"""After a failed or cancelled run, feedback and drift triggers wait this long before firing
again, so a run that always fails cannot turn into a training loop."""
MAX_DRIFT_WINDOWS = 500
"""Drift windows kept in the state: far more than any sustained-drift threshold needs."""


class Trigger(StrEnum):
    """Why a run started (the ``trigger`` label of the run metrics)."""

    SCHEDULE = "schedule"
    FEEDBACK = "feedback"
    DRIFT = "drift"
    MANUAL = "manual"


Outcome = Literal["succeeded", "failed", "cancelled"]


class DriftWindow(BaseModel):
    """One closed drift window of one model version that raised at least one alert."""

    model_version: str
    window_end: datetime


class RetrainState(BaseModel):
    """What the scheduler remembers between checks and restarts."""

    created_at: datetime
    schedule_anchor: datetime = Field(
        description="the next scheduled fire after this counts (last run start, or a skipped fire)"
    )
    feedback_offsets: dict[int, int] = Field(
        default_factory=dict, description="feedback topic end offset per partition at the last run"
    )
    alerts_cursor: dict[int, int] = Field(
        default_factory=dict, description="next alerts-topic offset to read, per partition"
    )
    drift_windows: list[DriftWindow] = Field(default_factory=list)
    last_run_started: datetime | None = None
    last_run_finished: datetime | None = None
    last_trigger: Trigger | None = None
    last_outcome: Outcome | None = None
    last_version: str | None = None
    runs: int = 0

    @classmethod
    def baseline(cls, now: datetime, feedback: dict[int, int], alerts: dict[int, int]) -> RetrainState:
        """A first state: nothing before ``now`` counts, so a fresh start never trains at once."""
        return cls(
            created_at=now, schedule_anchor=now, feedback_offsets=dict(feedback), alerts_cursor=dict(alerts)
        )


def state_path(settings: Settings) -> Path:
    return settings.home / "retraining" / "state.json"


def load_state(path: Path) -> RetrainState | None:
    """The saved state; None when there is none. An unreadable file is moved aside (and said
    so) rather than crashing the service, which then starts from a new baseline."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    try:
        return RetrainState.model_validate_json(text)
    except ValidationError as exc:
        aside = path.with_suffix(f".corrupt-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        path.replace(aside)
        log.warning(
            "retrain state unreadable, starting anew", path=str(path), moved_to=str(aside), error=str(exc)
        )
        return None


def save_state(path: Path, state: RetrainState) -> None:
    """Write atomically: a crash mid-write leaves the previous state, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(state.model_dump_json(indent=2))
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- schedule ------------------------------------------------------------------------------


def validate_cron(expression: str) -> str:
    """The expression, or ``ValueError`` saying it is not a 5-field cron expression."""
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValueError(f"learning.retrain_schedule {expression!r} is not a 5-field cron expression")
    return expression


def next_fire(expression: str, after: datetime) -> datetime:
    """The first scheduled time strictly after ``after`` (UTC)."""
    fire: datetime = croniter(expression, after.astimezone(UTC)).get_next(datetime)
    return fire.astimezone(UTC)


@dataclass(frozen=True)
class ScheduleCheck:
    """Whether the schedule asks for a run now: ``due``, ``missed`` (too late, skipped), or
    neither; ``fire`` is the scheduled time concerned, ``next`` the one after now."""

    due: bool
    missed: bool
    fire: datetime | None
    next: datetime


def check_schedule(
    expression: str, anchor: datetime, now: datetime, grace: timedelta = MISFIRE_GRACE
) -> ScheduleCheck:
    """Is a scheduled time in ``(anchor, now]``? Several missed ones count once (coalesced);
    the latest is due if it is at most ``grace`` old, otherwise it is missed."""
    upcoming = next_fire(expression, now)
    fire = next_fire(expression, anchor)
    if fire > now:
        return ScheduleCheck(due=False, missed=False, fire=None, next=upcoming)
    latest: datetime = croniter(expression, now.astimezone(UTC) + timedelta(seconds=1)).get_prev(datetime)
    latest = latest.astimezone(UTC)
    late = now - latest > grace
    return ScheduleCheck(due=not late, missed=late, fire=latest, next=upcoming)


# -- feedback ------------------------------------------------------------------------------


def labels_since(high: dict[int, int], recorded: dict[int, int]) -> int:
    """Feedback records written since ``recorded`` (end offsets per partition).

    Offsets count every label written, so a person relabelling a post counts again (the
    compacted topic keeps only the last answer, but each answer is new information). A
    partition whose end went backwards was recreated: all of its records are new.
    """
    total = 0
    for partition, end in high.items():
        before = recorded.get(partition, 0)
        total += end - before if end >= before else end
    return total


def topic_ends(settings: Settings, topic: str, *, timeout_s: float = 5.0) -> dict[int, int]:
    """End offset (high watermark) per partition of ``topic``; ``LookupError`` when it is missing."""
    from core.kafka import topic_watermarks

    marks = topic_watermarks(settings, lambda name: name == topic, timeout_s=timeout_s)
    if topic not in marks:
        raise LookupError(f"topic {topic} does not exist on {settings.kafka.bootstrap}")
    return {pid: high for pid, _low, high in marks[topic]}


# -- drift ---------------------------------------------------------------------------------


def drift_window_of(alert: Alert) -> DriftWindow | None:
    """The drift window a ``model_drift`` alert speaks of (its ``event_time`` is the window
    end; its id is ``model_drift:SIGNAL:VERSION:WINDOW_START``); None for other alerts."""
    if alert.kind != "model_drift":
        return None
    parts = alert.source_id.split(":", 2)
    version = parts[2].split(":", 1)[0] if len(parts) == 3 else "unknown"
    return DriftWindow(model_version=version or "unknown", window_end=alert.event_time)


def drift_streak(windows: Iterable[DriftWindow], window_s: int) -> int:
    """Consecutive drifted windows ending at the newest one, for the newest one's model version.

    Two signals (labels, confidence) of one window count once. A gap of a window without a
    drift alert ends the streak: the drift was not sustained.
    """
    windows = list(windows)
    newest = max(windows, key=lambda w: w.window_end, default=None)
    if newest is None:
        return 0
    ends = sorted({w.window_end for w in windows if w.model_version == newest.model_version}, reverse=True)
    streak = 1
    for later, earlier in itertools.pairwise(ends):
        gap = (later - earlier).total_seconds()
        if abs(gap - window_s) > window_s / 2:
            break
        streak += 1
    return streak


def read_drift_windows(
    settings: Settings, cursor: dict[int, int], *, timeout_s: float = 10.0
) -> tuple[list[DriftWindow], dict[int, int]]:
    """Drift windows of the alerts topic from ``cursor`` to its current end, and the new cursor.

    A record that fails the alert schema is logged and passed over: the alerts topic has its
    own producers, and a bad record must not stop the trigger from counting the good ones.
    """
    from confluent_kafka import TopicPartition

    from core.kafka import viewer_consumer
    from schemas.events import Alert
    from schemas.topics import ALERTS

    topic = ALERTS.name(settings)
    ends = topic_ends(settings, topic, timeout_s=timeout_s)
    consumer = viewer_consumer(settings, "retrain-drift", timeout_s=timeout_s)
    windows: list[DriftWindow] = []
    new_cursor = dict(cursor)
    try:
        assignment = []
        for pid, end in ends.items():
            low, _high = consumer.get_watermark_offsets(TopicPartition(topic, pid), timeout=timeout_s)
            start = max(low, min(cursor.get(pid, end), end))
            new_cursor[pid] = start
            if start < end:
                assignment.append(TopicPartition(topic, pid, start))
        if not assignment:
            return windows, new_cursor
        consumer.assign(assignment)
        deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
        while any(new_cursor[pid] < ends[pid] for pid in ends) and datetime.now(UTC) < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                log.warning("kafka error reading alerts", topic=topic, error=str(msg.error()))
                continue
            pid, offset = msg.partition() or 0, msg.offset() or 0
            new_cursor[pid] = offset + 1
            try:
                event = ALERTS.decode(msg.value() or b"")
            except ValueError as exc:
                log.warning("alert record skipped", topic=topic, partition=pid, offset=offset, error=str(exc))
                continue
            if isinstance(event, Alert) and (window := drift_window_of(event)) is not None:
                windows.append(window)
    finally:
        consumer.close()
    return windows, new_cursor


# -- the decision --------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What the triggers say now: ``fire`` (the trigger that starts a run, or None) and the
    state of every trigger, for ``retrain status`` and the metrics."""

    fire: Trigger | None
    schedule: ScheduleCheck
    pending_labels: int
    drift_streak: int
    backoff_until: datetime | None
    reasons: tuple[str, ...]


def decide(
    learning: LearningSettings,
    state: RetrainState,
    now: datetime,
    pending_labels: int,
    streak: int,
) -> Decision:
    """The first trigger that fires, in order schedule, feedback, drift.

    The schedule ignores the failure back-off (a weekly run is due whatever happened last
    time); feedback and drift wait it out.
    """
    schedule = check_schedule(validate_cron(learning.retrain_schedule), state.schedule_anchor, now)
    backoff_until = None
    if state.last_outcome in {"failed", "cancelled"} and state.last_run_finished is not None:
        until = state.last_run_finished + FAILURE_BACKOFF
        backoff_until = until if until > now else None
    reasons: list[str] = []
    fire: Trigger | None = None
    if schedule.due:
        fire = Trigger.SCHEDULE
        reasons.append(f"scheduled run of {schedule.fire:%Y-%m-%d %H:%M} UTC")
    feedback_due = pending_labels >= learning.retrain_feedback_labels
    if feedback_due:
        reasons.append(f"{pending_labels} new feedback labels (threshold {learning.retrain_feedback_labels})")
    drift_due = learning.retrain_on_drift and streak >= learning.retrain_drift_alerts
    if drift_due:
        reasons.append(f"drift in {streak} windows in a row (threshold {learning.retrain_drift_alerts})")
    if fire is None and backoff_until is None:
        fire = Trigger.FEEDBACK if feedback_due else Trigger.DRIFT if drift_due else None
    return Decision(fire, schedule, pending_labels, streak, backoff_until, tuple(reasons))


def merge_windows(kept: Sequence[DriftWindow], new: Sequence[DriftWindow]) -> list[DriftWindow]:
    """The state's drift windows plus ``new``, deduplicated, newest :data:`MAX_DRIFT_WINDOWS`."""
    unique = {(w.model_version, w.window_end): w for w in (*kept, *new)}
    return sorted(unique.values(), key=lambda w: w.window_end)[-MAX_DRIFT_WINDOWS:]


def state_summary(state: RetrainState) -> dict[str, object]:
    """The state as plain JSON values (``retrain status --json``)."""
    summary: dict[str, object] = json.loads(state.model_dump_json())
    return summary
