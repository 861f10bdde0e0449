"""Human feedback as a versioned dataset: the feedback topic read to its end, frozen in a file.

The feedback topic is compacted by source id, so the last answer for each post is the
one that counts. A snapshot reads every partition up to its high watermark, keeps the
last record per source id, and writes them as canonical JSON lines sorted by source id
under ``cache_dir/feedback/<sha256>.jsonl``. The same answers always give the same bytes
and so the same hash, which every training run records (``feedback_sha256``): any model
can be traced to the exact labels it saw, and the file can be read back to retrain it.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from core.kafka import admin_client, decode_key, viewer_consumer
from core.settings import Settings
from schemas.events import Feedback
from schemas.topics import FEEDBACK

log = structlog.get_logger(__name__)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
"""The hash of the empty dataset (no feedback yet), recorded by runs without feedback."""


class FeedbackError(RuntimeError):
    """The feedback topic could not be read to its end, or a dataset file does not match its hash."""


@dataclass(frozen=True)
class FeedbackDataset:
    """The last answer per post, in source-id order, and the file that versions them."""

    examples: list[Feedback]
    content_hash: str
    path: Path
    count: int
    skipped: int = field(default=0, compare=False)
    """Records left out because they did not parse as Feedback (logged with their offsets)."""


def canonical_bytes(examples: list[Feedback]) -> bytes:
    """JSON lines sorted by source id: the bytes the content hash is taken over."""
    ordered = sorted(examples, key=lambda f: f.source_id)
    return b"".join(f.model_dump_json().encode("utf-8") + b"\n" for f in ordered)


def write_dataset(examples: list[Feedback], directory: Path) -> FeedbackDataset:
    """Write (once) the canonical file of ``examples`` under ``directory``; named by its hash."""
    payload = canonical_bytes(examples)
    digest = hashlib.sha256(payload).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{digest}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_bytes(payload)
        tmp.replace(path)  # atomic: a reader never sees half a dataset
    ordered = sorted(examples, key=lambda f: f.source_id)
    return FeedbackDataset(examples=ordered, content_hash=digest, path=path, count=len(ordered))


def load_dataset(path: Path, expected_sha256: str | None = None) -> FeedbackDataset:
    """Read a dataset file back; raises FeedbackError when its bytes do not match the hash."""
    try:
        payload = Path(path).read_bytes()
    except OSError as exc:
        raise FeedbackError(f"cannot read feedback dataset {path}: {exc}") from exc
    digest = hashlib.sha256(payload).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise FeedbackError(f"feedback dataset {path} has sha256 {digest}, expected {expected_sha256}")
    examples = [Feedback.model_validate_json(line) for line in payload.splitlines() if line.strip()]
    return FeedbackDataset(examples=examples, content_hash=digest, path=Path(path), count=len(examples))


def _watermarks(consumer: Consumer, tp: TopicPartition, deadline: float) -> tuple[int, int]:
    """(low, high) of one partition, retried while the broker is still settling it (a topic
    just created has no leader for a moment); anything else, or the deadline, is an error."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10.0)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            settling = isinstance(error, KafkaError) and (
                error.retriable()
                or error.code() in (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
            )
            if not settling or time.monotonic() > deadline:
                raise FeedbackError(f"{tp.topic}[{tp.partition}]: no offsets: {exc}") from exc
            time.sleep(0.5)


def snapshot_feedback(settings: Settings, *, timeout_s: float = 60.0) -> FeedbackDataset:
    """Read the feedback topic to its high watermarks (last answer per source id wins) and
    write the versioned dataset. A topic that does not exist yet is an empty dataset; a
    broker that does not answer raises FeedbackError (training must not silently go on
    without the labels people gave)."""
    topic = FEEDBACK.name(settings)
    directory = settings.cache_dir / "feedback"
    try:
        metadata = admin_client(settings, timeout_s=10.0, quiet=True).list_topics(timeout=10.0)
    except KafkaException as exc:
        raise FeedbackError(f"Kafka at {settings.kafka.bootstrap} unavailable: {exc}") from exc
    if topic not in metadata.topics:
        log.warning("feedback topic does not exist yet: empty dataset", topic=topic)
        return write_dataset([], directory)

    latest: dict[str, Feedback] = {}
    skipped = 0
    consumer = viewer_consumer(settings, "feedback-snapshot", timeout_s=10.0)
    deadline = time.monotonic() + timeout_s
    try:
        ends: dict[int, int] = {}
        starts = []
        for pid in sorted(metadata.topics[topic].partitions):
            low, high = _watermarks(consumer, TopicPartition(topic, pid), deadline)
            if high > low:
                ends[pid] = high
                starts.append(TopicPartition(topic, pid, low))
        consumer.assign(starts)
        while ends:
            if time.monotonic() > deadline:
                raise FeedbackError(
                    f"{topic}: partitions {sorted(ends)} not read to their end within {timeout_s:.0f}s"
                )
            msg = consumer.poll(0.5)
            if msg is None:
                # Compaction can leave no record at the last offsets: the position says we are done.
                for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                    if tp.offset >= ends[tp.partition]:
                        ends.pop(tp.partition)
                continue
            if msg.error():
                raise FeedbackError(f"{topic}: {msg.error()}")
            pid, offset = msg.partition() or 0, msg.offset() or 0
            if pid in ends and offset >= ends[pid] - 1:
                ends.pop(pid)
            key = decode_key(msg.key())
            value = msg.value()
            if value is None:  # a tombstone withdraws the post's feedback
                if key is not None:
                    latest.pop(key, None)
                continue
            try:
                record = FEEDBACK.decode(value)
            except ValueError as exc:
                skipped += 1
                log.warning("feedback record skipped", partition=pid, offset=offset, reason=str(exc))
                continue
            if isinstance(record, Feedback):
                latest[record.source_id] = record  # offsets grow, so the last answer wins
    finally:
        consumer.close()

    dataset = write_dataset(list(latest.values()), directory)
    log.info(
        "feedback snapshot",
        topic=topic,
        count=dataset.count,
        skipped=skipped,
        sha256=dataset.content_hash,
        path=str(dataset.path),
    )
    return FeedbackDataset(
        examples=dataset.examples,
        content_hash=dataset.content_hash,
        path=dataset.path,
        count=dataset.count,
        skipped=skipped,
    )
