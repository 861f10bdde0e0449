"""A scoring child process that dies is rebuilt with the same model; one that cannot be
rebuilt fails the batch loudly instead of a runtime that looks loaded and scores nothing."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from core.settings import load_settings
from model_export.train import TrainResult
from scoring.child_process import CHILD_DIED, ChildProcessRuntime, _child_score

pytestmark = [pytest.mark.unit, pytest.mark.slow]

TEXTS = ["bitcoin to the moon", "rekt again, sold everything", "eth is moving sideways"]


def kill(pid: int) -> None:
    """SIGKILL the child and wait until it is gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"child {pid} still alive")


@pytest.fixture
def artifact(tiny: TrainResult, tmp_path: Path) -> Path:
    """A private copy of the tiny model, so a test can take it away."""
    return Path(shutil.copytree(tiny.artifact_dir, tmp_path / "model"))


@pytest.fixture
def runtime(artifact: Path, tmp_path: Path) -> Iterator[ChildProcessRuntime]:
    runtime = ChildProcessRuntime(str(artifact), load_settings(home=tmp_path))
    yield runtime
    runtime.close()


def test_a_killed_child_is_rebuilt_and_the_batch_scored(runtime: ChildProcessRuntime) -> None:
    expected = runtime.score(TEXTS)
    pid = runtime.child_pid()
    kill(pid)
    assert runtime.score(TEXTS) == expected
    assert runtime.rebuilds == 1 and runtime.child_pid() != pid


class TwoBatchesAtOnce(ChildProcessRuntime):
    """Once ``together`` is set, two threads' batches reach the child at the same moment."""

    together = False
    barrier = threading.Barrier(2)

    def _submit(self, pool: ProcessPoolExecutor, fn: Any, *args: Any) -> Any:
        if self.together and fn is _child_score:
            self.barrier.wait(timeout=60)
        return super()._submit(pool, fn, *args)


def test_a_child_that_dies_under_two_batches_in_flight_is_replaced_once(
    artifact: Path, tmp_path: Path
) -> None:
    """The stream keeps two batches queued for the child; both see its death, one rebuilds."""
    runtime = TwoBatchesAtOnce(str(artifact), load_settings(home=tmp_path))
    try:
        expected = runtime.score(TEXTS)
        kill(runtime.child_pid())
        runtime.together = True
        with ThreadPoolExecutor(max_workers=2) as threads:
            results = list(threads.map(runtime.score, [TEXTS, TEXTS]))
        assert results == [expected, expected]
        assert runtime.rebuilds == 1
    finally:
        runtime.close()


def test_a_child_that_cannot_be_rebuilt_fails_every_batch_until_it_can(
    runtime: ChildProcessRuntime, artifact: Path, tiny: TrainResult
) -> None:
    shutil.rmtree(artifact)
    kill(runtime.child_pid())
    with pytest.raises(RuntimeError):
        runtime.score(TEXTS)
    with pytest.raises(RuntimeError):  # still dead: never a silent empty result
        runtime.score(TEXTS)
    shutil.copytree(tiny.artifact_dir, artifact)  # the model is back: the next batch rebuilds
    assert [r.label for r in runtime.score(TEXTS)] == [r.label for r in runtime.score(TEXTS)]
    assert runtime.rebuilds == 1


class PoisonedRuntime(ChildProcessRuntime):
    """Any batch holding "poison" kills the child, as a crash in native code would."""

    def _submit(self, pool: ProcessPoolExecutor, fn: Any, *args: Any) -> Any:
        if fn is _child_score and any("poison" in text for text in args[0]):
            kill(super()._submit(pool, os.getpid))
        return super()._submit(pool, fn, *args)


def test_a_text_that_kills_the_child_fails_alone(artifact: Path, tmp_path: Path) -> None:
    runtime = PoisonedRuntime(str(artifact), load_settings(home=tmp_path))
    try:
        results = runtime.score(["bitcoin to the moon", "poison pill", "rekt again"])
        assert [r.error for r in results] == [None, CHILD_DIED, None]
        assert results[0].label is not None and results[2].label is not None
        assert runtime.rebuilds == 3  # the batch twice, then the poisoned text alone
    finally:
        runtime.close()
