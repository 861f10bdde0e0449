"""Run the real stream worker as a subprocess and read its output topics (integration tests, bench)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from core.kafka import admin_client, tail_offsets, topic_watermarks, viewer_consumer
from core.settings import Settings, load_settings
from schemas.topics import CLEAN_POSTS, DEAD_LETTER, SCORED_POSTS

REPO = Path(__file__).resolve().parents[2]


def worker_env(settings: Settings, *, model_uri: str, web_port: int, **extra: str) -> dict[str, str]:
    """Environment that points a worker process at the test's topics, keys and model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOPULSE_")}
    env.update(
        {
            "CRYPTOPULSE_HOME": str(settings.home),
            "CRYPTOPULSE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap,
            "CRYPTOPULSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "CRYPTOPULSE_REDIS__URL": settings.redis.dsn,
            "CRYPTOPULSE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
            "CRYPTOPULSE_MLFLOW__TRACKING_URI": settings.mlflow.uri,
            "CRYPTOPULSE_MODEL__URI": model_uri,
            "CRYPTOPULSE_STREAM__WEB_PORT": str(web_port),
            "PYTHONPATH": str(REPO),
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    env.update(extra)
    return env


def py_spy() -> str:
    """The py-spy executable: on PATH, or beside this interpreter (the project's venv)."""
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


@dataclass
class WorkerProcess:
    """``python -m stream_processors worker`` (or ``module``) with a log file; SIGKILL-able."""

    env: dict[str, str]
    log_path: Path
    web_port: int
    module: str = "stream_processors"
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "worker", "-l", "info"],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/stream/health", timeout=2) as resp:
                return dict(json.loads(resp.read()))
        except Exception:
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def wait_ready(self, timeout_s: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}; log: {self.tail()}")
            health = self.health()
            if health and health.get("model_loaded"):
                return health
            time.sleep(0.5)
        raise TimeoutError(f"worker not ready after {timeout_s}s; {self.diagnose()}")

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def diagnose(self, chars: int = 4000) -> str:
        """The log's tail and, while the worker runs, where each of its threads and its scoring
        child's are (``py-spy dump``): what a test that timed out waiting on it needs to show."""
        report = f"worker log ({self.log_path}):\n{self.tail(chars)}"
        if self.proc is None or self.proc.poll() is not None:
            return report + f"\nworker exited with {None if self.proc is None else self.proc.returncode}"
        try:
            dump = subprocess.run(
                [py_spy(), "dump", "--pid", str(self.proc.pid), "--subprocesses"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            stacks = dump.stdout + dump.stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            stacks = f"py-spy dump failed: {exc}"
        return (
            f"{report}\n{self._log_warnings()}\n{self._counters()}\n{self._kafka_state()}"
            f"\nstacks (py-spy dump --subprocesses):\n{stacks}"
        )

    def _log_warnings(self, limit: int = 40) -> str:
        """The whole log's warnings and errors (the tail alone misses those of the start-up)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        lines = [line[:400] for line in text.splitlines() if any(w in line for w in WARNING_MARKS)]
        return f"log warnings and errors ({len(lines)}):\n" + "\n".join(lines[:limit])

    def _counters(self) -> str:
        """The worker's own view: records in and out per agent, lag per source partition."""
        try:
            lines = self.metrics().splitlines()
        except Exception as exc:
            return f"worker metrics unavailable: {exc}"
        wanted = [line for line in lines if line.startswith(COUNTER_PREFIXES)]
        return "worker counters:\n" + "\n".join(wanted)

    def _kafka_state(self) -> str:
        """The broker's view of the test's topics and consumer groups (see :func:`kafka_state`)."""
        try:
            kafka = {
                "bootstrap_servers": self.env["CRYPTOPULSE_KAFKA__BOOTSTRAP_SERVERS"],
                "topic_prefix": self.env["CRYPTOPULSE_KAFKA__TOPIC_PREFIX"],
            }
            return kafka_state(load_settings(kafka=kafka))
        except Exception as exc:
            return f"kafka state unavailable: {type(exc).__name__}: {exc}"


WARNING_MARKS = ("WARN", "ERROR", "CRITICAL", "'level': 'warning'", "'level': 'error'", "Traceback")
COUNTER_PREFIXES = (
    "cryptopulse_stream_events_in_total",
    "cryptopulse_stream_events_out_total",
    "cryptopulse_stream_consumer_lag",
    "cryptopulse_stream_offset_gaps_total",
)


def kafka_state(settings: Settings, timeout_s: float = 10.0) -> str:
    """Watermarks of every topic under the settings' prefix, and each of its consumer groups'
    members (with their assigned partitions) and committed offsets: whether a record that
    never came out was written, assigned to a member, and read."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    prefix = settings.kafka.topic_prefix
    lines = ["kafka (topic: partition low-high):"]
    marks = topic_watermarks(settings, lambda name: name.startswith(f"{prefix}."), timeout_s=timeout_s)
    for topic, partitions in marks.items():
        lines.append(f"  {topic}: {' '.join(f'{pid}:{low}-{high}' for pid, low, high in partitions)}")
    admin = admin_client(settings, timeout_s=timeout_s)
    listed = admin.list_consumer_groups().result(timeout_s).valid
    groups = sorted(g.group_id for g in listed if g.group_id.startswith(prefix))
    for group_id, future in admin.describe_consumer_groups(groups).items() if groups else ():
        group = future.result(timeout_s)
        lines.append(f"group {group_id}: state {group.state}, {len(group.members)} member(s)")
        for member in group.members:
            assigned = sorted(f"{tp.topic}[{tp.partition}]" for tp in member.assignment.topic_partitions)
            lines.append(f"  member {member.member_id}: {' '.join(assigned)}")
        offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group_id)])[group_id]
        committed = sorted(
            f"{tp.topic}[{tp.partition}]={tp.offset}" for tp in offsets.result(timeout_s).topic_partitions
        )
        lines.append(f"  committed: {' '.join(committed) or 'none'}")
    return "\n".join(lines)


@contextlib.contextmanager
def running_worker(env: dict[str, str], log_path: Path, web_port: int) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(env, log_path, web_port).start()
    try:
        yield worker
    finally:
        worker.stop()


WAIT_POLL_S = 0.02
"""Longest one poll of :meth:`OutputReader.wait_for` waits for records."""


@dataclass
class OutputReader:
    """Reads scored and dead-letter topics from the beginning (read_committed)."""

    settings: Settings
    scored: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    received_at: dict[str, float] = field(default_factory=dict)
    _consumer: Any = None
    _seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka.bootstrap,
                "group.id": f"reader-{self.settings.kafka.topic_prefix}-{time.time_ns()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self._consumer.subscribe([SCORED_POSTS.name(self.settings), DEAD_LETTER.name(self.settings)])

    def ids(self) -> set[str]:
        """Source ids with an outcome (scored or dead-lettered) so far."""
        return set(self._seen)

    def poll(self, timeout_s: float = 0.5) -> int:
        """Read what is there, waiting up to ``timeout_s`` for up to 500 records; a scored
        record is stamped with the time this call returns (so up to ``timeout_s`` late)."""
        got = 0
        for msg in self._consumer.consume(num_messages=500, timeout=timeout_s):
            if msg.error():
                continue
            record = json.loads(msg.value())
            now = time.time()
            if msg.topic() == SCORED_POSTS.name(self.settings):
                self.scored.append(record)
                self.received_at.setdefault(record["source_id"], now)
            else:
                self.dead.append(record)
            self._seen.add(record["source_id"])
            got += 1
        return got

    def wait_for(self, expected: Iterable[str], timeout_s: float = 120.0) -> set[str]:
        """Poll until every expected id has an outcome; returns the ids still missing.

        Short polls: a record is stamped at most ``WAIT_POLL_S`` after it became readable
        (0.5 s polls stamped the last records of a benchmark run, where its p99 lies, up to
        half a second late)."""
        wanted = set(expected)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not wanted <= self._seen:
            self.poll(WAIT_POLL_S)
        return wanted - self._seen

    def close(self) -> None:
        self._consumer.close()


Record = tuple[int, int, bytes | None, bytes]  # partition, offset, key, value


def read_all(settings: Settings, topic: str, timeout_s: float = 10.0) -> list[Record]:
    """Every record of a topic: ``(partition, offset, key, value)``."""
    consumer = viewer_consumer(settings, "trace", timeout_s=timeout_s)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            return []
        tails = tail_offsets(consumer, topic, metadata.topics[topic].partitions, None, timeout_s=timeout_s)
        consumer.assign([tp for tp, _ in tails])
        remaining = sum(high - tp.offset for tp, high in tails)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while remaining > 0 and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error():
                    continue
                remaining -= 1
                records.append((msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value() or b""))
        return records
    finally:
        consumer.close()


def trace_ids(settings: Settings, ids: Iterable[str], group: str) -> str:
    """Where records went: for each id, its clean.posts positions, scored.posts positions and
    whether the worker's ``scored`` changelog claims it (to explain a failed no-loss check)."""
    wanted = sorted(ids)[:10]
    clean = read_all(settings, CLEAN_POSTS.name(settings))
    scored = read_all(settings, SCORED_POSTS.name(settings))
    changelog = read_all(settings, f"{group}-scored-changelog")
    lines = [
        f"clean.posts {len(clean)} records, scored.posts {len(scored)}, scored changelog {len(changelog)}"
    ]
    for sid in wanted:
        needle = sid.encode()
        lines.append(
            f"{sid}: clean at {[(p, o) for p, o, k, _ in clean if k == needle]}, "
            f"scored at {[(p, o) for p, o, k, _ in scored if k == needle]}, "
            f"claims {[(p, o, v[:60]) for p, o, k, v in changelog if k is not None and needle in k]}"
        )
    return "\n".join(lines)
