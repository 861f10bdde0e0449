"""The retraining service: checks the triggers every minute and runs training in a child.

One small process, supervised by ``cryptopulse up`` like the other stages. It never trains
itself: a run is a sequence of child processes (``cryptopulse train`` for the configured
profile, then ``cryptopulse retrain evaluate``), each in its own session, so a crash or an
out-of-memory kill of training cannot take the scheduler down, and a stop cancels the run by
signalling the child's whole process group. One run at a time, per home: an ``flock`` on
``home/retraining/run.lock`` is held for the run (a ``retrain run`` typed meanwhile waits its
turn by failing fast, never by training twice).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from retraining.evaluate import RESULT_PREFIX
from retraining.triggers import (
    Decision,
    Outcome,
    RetrainState,
    Trigger,
    decide,
    drift_streak,
    labels_since,
    load_state,
    merge_windows,
    read_drift_windows,
    save_state,
    state_path,
    topic_ends,
)

if TYPE_CHECKING:
    from core.settings import Settings

log = structlog.get_logger(__name__)

CHECK_INTERVAL_S = 60.0
STOP_GRACE_S = 45.0
"""SIGTERM to a training child, then this long before SIGKILL (the teacher checkpoints on
SIGTERM; supervisord waits ``RetrainService.stop_timeout_s`` for the whole service)."""

Steps = Callable[[Trigger, datetime], list[list[str]]]
"""(trigger, run start) -> the argv of each child process of one run, in order."""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cryptopulse", *args]


def training_steps(profile: str, train_command: Sequence[str] | None = None) -> list[list[str]]:
    """The training children of a profile: ``fast`` trains the served ensemble; ``teacher``
    fine-tunes (or resumes) the teacher first, then the ensemble whose MiniLM it teaches
    (``train --profile distill``). ``train_command`` replaces them all (another machine, a
    remote runner, a test)."""
    if train_command:
        return [list(train_command)]
    if profile == "teacher":
        return [
            _cli("train", "--profile", "teacher", "--no-progress"),
            _cli("train", "--profile", "distill", "--no-progress"),
        ]
    return [_cli("train", "--no-progress")]


def default_steps(settings: Settings, train_command: Sequence[str] | None = None) -> Steps:
    """Training steps, then ``retrain evaluate`` for the versions registered since the start."""

    def steps(trigger: Trigger, started: datetime) -> list[list[str]]:
        evaluate = _cli("retrain", "evaluate", "--since", started.isoformat())
        return [*training_steps(settings.learning.retrain_profile, train_command), evaluate]

    return steps


class RunBusy(RuntimeError):
    """Another run holds the lock."""


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[int]:
    """Exclusive, non-blocking; yields the locked descriptor. The kernel releases it when the
    last process holding the descriptor ends: the training children inherit it, so a service
    killed mid-run (OOM, SIGKILL) leaves no stale lock, and no second run can start while its
    orphaned child still trains."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusy(f"another retraining run holds {path}") from None
        try:
            yield handle.fileno()
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass
class RunResult:
    """One run: why, how it ended, and what it produced."""

    trigger: Trigger
    outcome: Outcome
    started: datetime
    finished: datetime
    returncode: int | None
    log_path: Path
    version: str | None = None
    feedback: dict[str, float] | None = None
    promotion: str | None = None
    reasons: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """``retrain run``'s exit status: 0 succeeded, 1 failed, 130 cancelled."""
        return {"succeeded": 0, "failed": 1, "cancelled": 130}[self.outcome]


@dataclass
class Metrics:
    """The service's Prometheus metrics, in a registry of its own (tests build several)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.runs = Counter(
            "cryptopulse_retrain_runs_total",
            "Retraining runs by trigger and outcome",
            ["trigger", "outcome"],
            registry=r,
        )
        self.last_run = Gauge(
            "cryptopulse_retrain_last_run_timestamp_seconds", "Unix time the last run finished", registry=r
        )
        self.last_duration = Gauge(
            "cryptopulse_retrain_last_run_duration_seconds", "How long the last run took", registry=r
        )
        self.pending = Gauge(
            "cryptopulse_retrain_pending_feedback_labels", "Feedback labels since the last run", registry=r
        )
        self.streak = Gauge(
            "cryptopulse_retrain_drift_streak_windows",
            "Model-drift windows in a row since the last run",
            registry=r,
        )
        self.next_run = Gauge(
            "cryptopulse_retrain_next_scheduled_run_timestamp_seconds",
            "Unix time of the next scheduled run",
            registry=r,
        )
        self.in_progress = Gauge("cryptopulse_retrain_run_in_progress", "1 while a run is going", registry=r)
        self.last_check = Gauge(
            "cryptopulse_retrain_last_check_timestamp_seconds",
            "Unix time the triggers were last checked",
            registry=r,
        )
        self.check_failures = Counter(
            "cryptopulse_retrain_check_failures_total",
            "Trigger checks that could not read a source",
            ["source"],
            registry=r,
        )

    def observe(self, decision: Decision, now: datetime) -> None:
        self.pending.set(decision.pending_labels)
        self.streak.set(decision.drift_streak)
        self.next_run.set(decision.schedule.next.timestamp())
        self.last_check.set(now.timestamp())

    def finished(self, result: RunResult) -> None:
        self.runs.labels(trigger=result.trigger.value, outcome=result.outcome).inc()
        self.last_run.set(result.finished.timestamp())
        self.last_duration.set((result.finished - result.started).total_seconds())


class Retrainer:
    """Triggers, state and runs of one home. ``serve()`` is the long-running service;
    ``tick()`` one check (and perhaps a run); ``run()`` one run now."""

    def __init__(
        self,
        settings: Settings,
        *,
        steps: Steps | None = None,
        state_file: Path | None = None,
        check_interval_s: float = CHECK_INTERVAL_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.steps = steps or default_steps(settings)
        self.state_file = state_file or state_path(settings)
        self.check_interval_s = check_interval_s
        self.clock = clock
        self.metrics = metrics or Metrics()
        self._stop = False
        self._child: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None

    @property
    def lock_path(self) -> Path:
        return self.state_file.parent / "run.lock"

    @property
    def runs_dir(self) -> Path:
        return self.state_file.parent / "runs"

    # -- observing ---------------------------------------------------------------------

    def observe(self, now: datetime | None = None, *, save: bool = True) -> tuple[RetrainState, Decision]:
        """Read the sources, fold what is new into the state, save it (unless ``save`` is
        false: ``retrain status`` only looks), and decide.

        A source that cannot be read (Kafka away) is counted and logged, and the trigger it
        feeds does not fire this time (nothing is lost: the counts live in the offsets, read
        again at the next check); the schedule works regardless.
        """
        now = now or self.clock()
        from schemas.topics import FEEDBACK

        state = load_state(self.state_file)
        feedback_ends: dict[int, int] | None = None
        try:
            feedback_ends = topic_ends(self.settings, FEEDBACK.name(self.settings))
        except Exception as exc:  # KafkaException, LookupError: a source away, not a bug here
            self.metrics.check_failures.labels(source="feedback").inc()
            log.warning("feedback offsets unavailable", error=str(exc))
        if state is None:
            state = RetrainState.baseline(now, feedback_ends or {}, {})
            if save:
                log.info("retrain state created; nothing before now counts", path=str(self.state_file))
        if feedback_ends is not None and not state.feedback_offsets:
            state.feedback_offsets = dict(feedback_ends)  # first reading after a start without Kafka
        pending = labels_since(feedback_ends, state.feedback_offsets) if feedback_ends is not None else 0
        if self.settings.learning.retrain_on_drift:
            try:
                first_read = not state.alerts_cursor
                windows, cursor = read_drift_windows(self.settings, state.alerts_cursor)
                state.alerts_cursor = cursor
                if not first_read:
                    state.drift_windows = merge_windows(state.drift_windows, windows)
            except Exception as exc:
                self.metrics.check_failures.labels(source="alerts").inc()
                log.warning("drift alerts unavailable", error=str(exc))
        streak = drift_streak(state.drift_windows, self.settings.stream.drift_window_s)
        decision = decide(self.settings.learning, state, now, pending, streak)
        if decision.schedule.missed and decision.schedule.fire is not None:
            log.warning(
                "scheduled run missed while the service was down; skipped", fire=str(decision.schedule.fire)
            )
            state.schedule_anchor = decision.schedule.fire
        if save:
            save_state(self.state_file, state)
        self.metrics.observe(decision, now)
        return state, decision

    # -- running -----------------------------------------------------------------------

    def tick(self) -> RunResult | None:
        """One check: a run (blocking, in children) when a trigger fires."""
        _state, decision = self.observe()
        if decision.fire is None:
            return None
        log.info("trigger fired", trigger=decision.fire.value, reasons=list(decision.reasons))
        try:
            return self.run(decision.fire, decision.reasons)
        except RunBusy as exc:
            log.warning("trigger fired but a run is going", error=str(exc))
            return None

    def run(self, trigger: Trigger, reasons: Sequence[str] = ()) -> RunResult:
        """One run now, under the lock; the state records it whatever the outcome."""
        with run_lock(self.lock_path) as fd:
            self._lock_fd = fd
            try:
                return self._run_locked(trigger, tuple(reasons))
            finally:
                self._lock_fd = None

    def _snapshot_sources(self) -> tuple[dict[int, int] | None, dict[int, int] | None]:
        """Feedback and alert offsets at the run's start: what arrives later counts for the next."""
        from schemas.topics import ALERTS, FEEDBACK

        ends: list[dict[int, int] | None] = []
        for spec in (FEEDBACK, ALERTS):
            try:
                ends.append(topic_ends(self.settings, spec.name(self.settings)))
            except Exception as exc:
                log.warning("offsets unavailable at run start", topic=spec.suffix, error=str(exc))
                ends.append(None)
        return ends[0], ends[1]

    def _run_locked(self, trigger: Trigger, reasons: tuple[str, ...]) -> RunResult:
        started = self.clock()
        feedback_ends, alert_ends = self._snapshot_sources()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.runs_dir / f"{started:%Y%m%dT%H%M%S}-{trigger.value}.log"
        log.info(
            "run started",
            trigger=trigger.value,
            log=str(log_path),
            profile=self.settings.learning.retrain_profile,
        )
        self.metrics.in_progress.set(1)
        returncode: int | None = None
        outcome: Outcome = "succeeded"
        try:
            for argv in self.steps(trigger, started):
                returncode = self._run_child(argv, log_path)
                if returncode is None:
                    outcome = "cancelled"
                    break
                if returncode != 0:
                    outcome = "failed"
                    break
        finally:
            self.metrics.in_progress.set(0)
        result = RunResult(trigger, outcome, started, self.clock(), returncode, log_path, reasons=reasons)
        if outcome == "succeeded":
            self._read_result(result)
        self._record(result, feedback_ends, alert_ends)
        self.metrics.finished(result)
        log.info(
            "run finished",
            trigger=trigger.value,
            outcome=outcome,
            returncode=returncode,
            version=result.version,
            seconds=round((result.finished - result.started).total_seconds(), 1),
            log=str(log_path),
        )
        return result

    def _run_child(self, argv: Sequence[str], log_path: Path) -> int | None:
        """Run one child to its end; None when a stop cancelled it."""
        if self._stop:
            return None
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
        with log_path.open("ab") as out:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            try:
                child = subprocess.Popen(  # nosec B603 # argv: our sub-commands, or the operator's --train-command
                    list(argv),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    pass_fds=() if self._lock_fd is None else (self._lock_fd,),
                )
            except OSError as exc:  # a --train-command that is not there: a failed run, not a crash
                out.write(f"cannot start {argv[0]}: {exc}\n".encode())
                log.error("child could not start", argv=" ".join(argv), error=str(exc))
                return 127
        self._child = child
        log.info("child started", pid=child.pid, argv=" ".join(argv))
        try:
            while child.poll() is None:
                if self._stop:
                    self._cancel(child)
                    return None
                time.sleep(0.2)
        finally:
            self._child = None
        return child.returncode

    def _cancel(self, child: subprocess.Popen[bytes]) -> None:
        """SIGTERM the child's process group, SIGKILL it after :data:`STOP_GRACE_S`."""
        log.warning("cancelling the run", pid=child.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()

    def _read_result(self, result: RunResult) -> None:
        """The last ``retrain-result`` line of the run's log (written by ``retrain evaluate``)."""
        found: dict[str, Any] | None = None
        with result.log_path.open("rb") as lines:
            for raw in lines:
                line = raw.decode("utf-8", "replace").strip()
                if line.startswith(RESULT_PREFIX):
                    try:
                        found = json.loads(line[len(RESULT_PREFIX) :])
                    except ValueError:
                        log.warning("unreadable run result line", line=line[:200])
        if found:
            result.version = found.get("version")
            result.feedback = found.get("feedback")
            result.promotion = found.get("promotion")

    def _record(
        self, result: RunResult, feedback_ends: dict[int, int] | None, alert_ends: dict[int, int] | None
    ) -> None:
        """Save the outcome. Every run consumes the scheduled slot; only a successful one
        resets the feedback and drift counts (a failed one keeps them, after a back-off)."""
        state = load_state(self.state_file) or RetrainState.baseline(result.started, feedback_ends or {}, {})
        state.schedule_anchor = max(state.schedule_anchor, result.started)
        state.last_run_started = result.started
        state.last_run_finished = result.finished
        state.last_trigger = result.trigger
        state.last_outcome = result.outcome
        state.runs += 1
        if result.version is not None:
            state.last_version = result.version
        if result.outcome == "succeeded":
            if feedback_ends is not None:
                state.feedback_offsets = dict(feedback_ends)
            if alert_ends is not None:
                state.alerts_cursor = dict(alert_ends)
            state.drift_windows = []
        save_state(self.state_file, state)

    # -- serving -----------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Signal handler: only sets a flag (the loop and the run poll it), so it is safe
        whatever the main thread was doing when the signal came."""
        self._stop = True

    @property
    def stopping(self) -> bool:
        return self._stop

    def serve(self, *, metrics_port: int | None = None, host: str = "127.0.0.1") -> None:
        """Check the triggers every ``check_interval_s`` until SIGTERM/SIGINT; a run in
        progress is cancelled (its outcome recorded) before returning."""
        port = self.settings.learning.orchestrator_metrics_port if metrics_port is None else metrics_port
        start_http_server(port, addr=host, registry=self.metrics.registry)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.request_stop)
        log.info(
            "retraining service started",
            schedule=self.settings.learning.retrain_schedule,
            feedback_labels=self.settings.learning.retrain_feedback_labels,
            drift_alerts=self.settings.learning.retrain_drift_alerts
            if self.settings.learning.retrain_on_drift
            else None,
            profile=self.settings.learning.retrain_profile,
            metrics_port=port,
        )
        while not self._stop:
            try:
                self.tick()
            except Exception:  # one failed check must not end the service; the next may work
                log.exception("trigger check failed")
                self.metrics.check_failures.labels(source="check").inc()
            deadline = time.monotonic() + self.check_interval_s
            while not self._stop and time.monotonic() < deadline:
                time.sleep(0.2)
        log.info("retraining service stopped")
