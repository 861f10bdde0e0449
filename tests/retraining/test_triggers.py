"""The pure trigger logic: schedule, feedback counts, drift streaks, the decision, the state file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.settings import LearningSettings, load_settings
from retraining.triggers import (
    FAILURE_BACKOFF,
    DriftWindow,
    RetrainState,
    Trigger,
    check_schedule,
    decide,
    drift_streak,
    drift_window_of,
    labels_since,
    load_state,
    merge_windows,
    next_fire,
    save_state,
    validate_cron,
)
from tests.retraining.helpers import drift_alert

pytestmark = pytest.mark.unit

WEEKLY = "0 3 * * 1"  # Mondays 03:00 UTC
MONDAY_3AM = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def learning(**values: object) -> LearningSettings:
    return load_settings().learning.model_copy(update=values)


def test_next_fire_is_the_next_monday_at_three() -> None:
    assert next_fire(WEEKLY, MONDAY_3AM - HOUR) == MONDAY_3AM
    assert next_fire(WEEKLY, MONDAY_3AM) == MONDAY_3AM + timedelta(days=7)


@pytest.mark.parametrize("bad", ["", "every monday", "0 3 * *", "61 3 * * 1", "0 3 * * 1 2026"])
def test_bad_cron_expressions_are_refused_with_the_setting_named(bad: str) -> None:
    with pytest.raises(ValueError, match=r"learning\.retrain_schedule"):
        validate_cron(bad)


def test_schedule_due_only_after_the_fire_time_and_within_the_grace() -> None:
    anchor = MONDAY_3AM - timedelta(days=2)
    assert not check_schedule(WEEKLY, anchor, MONDAY_3AM - timedelta(minutes=1)).due
    on_time = check_schedule(WEEKLY, anchor, MONDAY_3AM + timedelta(minutes=1))
    assert on_time.due and on_time.fire == MONDAY_3AM and not on_time.missed
    assert on_time.next == MONDAY_3AM + timedelta(days=7)
    late = check_schedule(WEEKLY, anchor, MONDAY_3AM + 2 * HOUR)
    assert late.missed and not late.due and late.fire == MONDAY_3AM


def test_several_missed_fires_coalesce_into_the_latest() -> None:
    anchor = MONDAY_3AM - timedelta(days=21)
    check = check_schedule(WEEKLY, anchor, MONDAY_3AM + timedelta(minutes=5))
    assert check.due and check.fire == MONDAY_3AM


def test_a_run_after_the_fire_time_consumes_it() -> None:
    assert not check_schedule(WEEKLY, MONDAY_3AM + timedelta(minutes=1), MONDAY_3AM + 2 * HOUR).due


def test_labels_since_counts_new_offsets_and_whole_recreated_partitions() -> None:
    assert labels_since({0: 10, 1: 5}, {0: 4, 1: 5}) == 6
    assert labels_since({0: 10, 1: 3}, {0: 10}) == 3  # a partition never seen: all new
    assert labels_since({0: 2}, {0: 40}) == 2  # end went backwards: the topic was recreated


def test_drift_window_of_reads_version_and_window_end() -> None:
    start = datetime(2026, 12, 1, 10, tzinfo=UTC)
    window = drift_window_of(drift_alert("cryptopulse-sentiment/4", start, start + HOUR))
    assert window == DriftWindow(model_version="cryptopulse-sentiment/4", window_end=start + HOUR)


def windows(version: str, *hours: int) -> list[DriftWindow]:
    base = datetime(2026, 12, 1, tzinfo=UTC)
    return [DriftWindow(model_version=version, window_end=base + h * HOUR) for h in hours]


def test_drift_streak_counts_consecutive_windows_once_each() -> None:
    both_signals = windows("m/1", 1, 2, 2, 3)  # window 2 drifted on labels and confidence
    assert drift_streak(both_signals, 3600) == 3
    assert drift_streak(windows("m/1", 1, 2, 4, 5), 3600) == 2  # hour 3 had no drift: streak broke
    assert drift_streak([], 3600) == 0


def test_drift_streak_follows_the_newest_model_version() -> None:
    assert drift_streak(windows("m/1", 1, 2, 3) + windows("m/2", 4), 3600) == 1


def test_merge_windows_deduplicates_and_keeps_order() -> None:
    merged = merge_windows(windows("m/1", 1, 2), windows("m/1", 2, 3))
    assert [w.window_end.hour for w in merged] == [1, 2, 3]


def state(now: datetime, **values: object) -> RetrainState:
    return RetrainState.baseline(now, {0: 0}, {0: 0}).model_copy(update=values)


def test_decide_fires_each_trigger_at_its_threshold() -> None:
    now = MONDAY_3AM + timedelta(days=2)
    settings = learning(retrain_feedback_labels=500, retrain_drift_alerts=3)
    quiet = decide(settings, state(now - HOUR), now, pending_labels=499, streak=2)
    assert quiet.fire is None and quiet.reasons == ()
    assert decide(settings, state(now - HOUR), now, 500, 0).fire is Trigger.FEEDBACK
    assert decide(settings, state(now - HOUR), now, 0, 3).fire is Trigger.DRIFT
    off = learning(retrain_drift_alerts=3, retrain_on_drift=False)
    assert decide(off, state(now - HOUR), now, 0, 30).fire is None


def test_decide_prefers_the_schedule_and_lists_every_reason() -> None:
    now = MONDAY_3AM + timedelta(minutes=1)
    decision = decide(learning(), state(MONDAY_3AM - HOUR), now, 900, 9)
    assert decision.fire is Trigger.SCHEDULE
    assert len(decision.reasons) == 3


def test_a_failed_run_holds_feedback_and_drift_for_the_backoff_but_not_the_schedule() -> None:
    finished = MONDAY_3AM - timedelta(minutes=30)
    failed = state(finished - HOUR, last_outcome="failed", last_run_finished=finished)
    soon = finished + FAILURE_BACKOFF / 2
    held = decide(learning(), failed, soon, 900, 0)
    assert held.fire is Trigger.SCHEDULE and held.backoff_until == finished + FAILURE_BACKOFF
    later = finished + FAILURE_BACKOFF + timedelta(minutes=1)
    after = decide(learning(), failed.model_copy(update={"schedule_anchor": later}), later, 900, 0)
    assert after.fire is Trigger.FEEDBACK and after.backoff_until is None


def test_state_round_trips_and_a_corrupt_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "retraining" / "state.json"
    assert load_state(path) is None
    saved = state(MONDAY_3AM, feedback_offsets={0: 7, 1: 9}, drift_windows=windows("m/1", 1))
    save_state(path, saved)
    assert load_state(path) == saved
    path.write_text("{not json", "utf-8")
    assert load_state(path) is None
    assert not path.exists()
    assert len(list(path.parent.glob("state.corrupt-*"))) == 1
