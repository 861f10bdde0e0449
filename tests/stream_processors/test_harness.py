"""The worker harness's failure report: a timed-out integration test shows where the worker is."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from core.kafka import EventProducer
from core.settings import Settings
from schemas.topics import CLEAN_POSTS
from tests.stream_processors.harness import WorkerProcess, kafka_state

WAITING = """
import pathlib, sys, time
def waiting_on_the_model():
    pathlib.Path(sys.argv[1]).write_text("inside")
    while True:
        time.sleep(0.05)
waiting_on_the_model()
"""


def test_a_running_workers_report_holds_its_log_and_its_threads_stacks(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("ready\nwaiting for the next batch\n")
    marker = tmp_path / "inside"
    proc = subprocess.Popen([sys.executable, "-c", WAITING, str(marker)], start_new_session=True)
    worker = WorkerProcess(env={}, log_path=log, web_port=0, proc=proc)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():  # the frame to find exists once the marker does
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        report = worker.diagnose()
    finally:
        proc.kill()
        proc.wait(10)
    assert "waiting for the next batch" in report
    if "Permission denied" in report or "Operation not permitted" in report:
        pytest.skip("py-spy may not read another process here (ptrace restricted)")
    assert "waiting_on_the_model" in report, report
    assert "exited" in worker.diagnose()


@pytest.mark.integration
def test_the_kafka_state_shows_what_was_written_assigned_and_committed(isolated_settings: Settings) -> None:
    """The broker's side of a stalled test: a topic's records, a group's member and its commit."""
    settings = isolated_settings
    topic = CLEAN_POSTS.name(settings)
    group = f"{settings.kafka.topic_prefix}.probe"
    with EventProducer(settings, component="test") as producer:
        for _ in range(3):
            producer.send_raw(topic, b"{}", key="bitcoin")  # one key: one partition
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    )
    try:
        consumer.subscribe([topic])
        read = [msg for _ in range(3) if (msg := consumer.poll(15)) is not None and not msg.error()]
        assert len(read) == 3
        consumer.commit(message=read[1], asynchronous=False)  # the second record's offset + 1
        state = kafka_state(settings)
    finally:
        consumer.close()
    partition = read[0].partition()
    assert f"{topic}: " in state and f"{partition}:0-3" in state, state
    assert f"group {group}: state" in state, state
    assert f"{topic}[{partition}]=2" in state, state
    assert "member " in state and f"{topic}[{partition}]" in state.split(f"group {group}")[1], state
