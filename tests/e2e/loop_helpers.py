"""Helpers of the learning-loop end-to-end test (tests/e2e/test_learning_loop.py).

Run as ``python -m tests.e2e.loop_helpers ARTIFACT_DIR F1``, this module is the stand-in
training command the retraining service starts: it registers an existing artifact as a new
version of the registered model named by the environment's settings, with gate metrics of
our choosing, exactly as ``cryptopulse train`` would register a real run (seconds, not the
25 minutes of a real training run).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from core.kafka import EventProducer
from core.settings import Settings, load_settings
from schemas.events import RedditPost
from schemas.topics import RAW_REDDIT

T = TypeVar("T")

LATENCY_P95_MS = 5.0
"""The same measured latency on every version: the gate's latency check passes (1.0x)."""


def register(settings: Settings, artifact_dir: Path, f1: float) -> str:
    """Register ``artifact_dir`` as a new version with weighted F1 ``f1``; its version number."""
    from tests.model_export.test_registry import register_version

    return register_version(settings, artifact_dir, f1=f1, p95=LATENCY_P95_MS).version


def produce_posts(settings: Settings, ids: Iterable[str]) -> None:
    """One live raw Reddit post per id (alternately bullish and bearish), flushed."""
    with EventProducer(settings, component="test") as producer:
        for i, sid in enumerate(ids):
            mood = ["looks strong, buying more", "is crashing hard, selling everything"][i % 2]
            producer.send(
                RAW_REDDIT.name(settings),
                RedditPost(
                    source_id=sid,
                    event_time=datetime.now(UTC),
                    subreddit="Bitcoin",
                    title=f"Honestly bitcoin {mood} today, post {sid}",
                ),
                key=sid,
            )


def eventually(check: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.5) -> T:
    """``check()``'s first truthy answer; AssertionError (with the last answer) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(every_s)


def main(argv: list[str]) -> int:
    """``ARTIFACT_DIR F1``: register and print the version (the retraining run's log keeps it)."""
    if len(argv) != 2:
        print("usage: python -m tests.e2e.loop_helpers ARTIFACT_DIR F1", file=sys.stderr)
        return 2
    version = register(load_settings(), Path(argv[0]), float(argv[1]))
    print(f"registered version {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def isolated_stack_env(home: Path, model_dir: Path, label: str) -> dict[str, str]:
    """Environment for pipeline processes started by an e2e test: their own home, topic and
    key prefixes and free ports, beside the shared platform; the given model."""
    from tests.ports import free_port

    tag = f"{label}-{uuid.uuid4().hex[:8]}"
    return {
        "CRYPTOPULSE_HOME": str(home),
        "CRYPTOPULSE_KAFKA__TOPIC_PREFIX": tag,
        "CRYPTOPULSE_REDIS__KEY_PREFIX": tag,
        "CRYPTOPULSE_MODEL__URI": str(model_dir),
        "CRYPTOPULSE_STREAM__WEB_PORT": str(free_port()),
        "CRYPTOPULSE_SPARK__METRICS_PORT": str(free_port()),
        "CRYPTOPULSE_API__PORT": str(free_port()),
        "CRYPTOPULSE_API__WORKERS": "1",
        "CRYPTOPULSE_ALERTING__PORT": str(free_port()),
    }
