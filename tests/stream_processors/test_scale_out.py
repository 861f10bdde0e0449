"""Two real worker processes share the partitions: a rebalance mid-stream loses nothing and
the per-coin counters stay exact (the counts topic is keyed by coin, so one worker owns
each coin's counters; see stream_processors/agents/counts.py).

Worker 1 starts alone on a backlog of unique posts; once it has scored some, worker 2 joins
the same consumer group (a rebalance while batches are in flight) and more posts follow.
At the end every input id has exactly one outcome, and, per coin and window, the last
counter value published on ``live:counters`` summed over the windows equals the number of
unique scored posts that mention the coin. With the old design (counters written on the
partition of whichever clean record updated them) each worker kept a partial count of every
coin and these sums came out short.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from core.kafka import EventProducer
from core.settings import Settings
from schemas.topics import RAW_REDDIT
from stream_processors.models import ALL_COINS
from tests.ports import free_port
from tests.stream_processors.harness import OutputReader, WorkerProcess, worker_env
from tests.stream_processors.test_integration import (  # noqa: F401  (fixtures)
    Subscriber,
    english_post,
    registered_model,
    stream_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH = 16
FIRST, SECOND = 300, 200  # posts before and after the second worker joins


def start(settings: Settings, model: str, log: Path) -> WorkerProcess:
    port = free_port()
    env = worker_env(
        settings,
        model_uri=f"models:/{model}@champion",
        web_port=port,
        CRYPTOPULSE_STREAM__BATCH_SIZE=str(BATCH),
    )
    return WorkerProcess(env, log, port).start()


def agent_events_in(worker: WorkerProcess, agent: str) -> float:
    """The worker's ``cryptopulse_stream_events_in_total{agent=...}``."""
    pattern = rf'^cryptopulse_stream_events_in_total\{{agent="{agent}"\}} (\S+)$'
    found = re.search(pattern, worker.metrics(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def final_counters(messages: list[tuple[str, dict[str, Any]]], channel: str) -> dict[tuple[str, str], int]:
    """(window, coin) -> sum over the window starts of each window's last (largest) volume."""
    last: dict[tuple[str, str, float], int] = {}
    for name, data in messages:
        if name != channel:
            continue
        key = (data["window"], data["coin"], float(data["window_start"]))
        last[key] = max(last.get(key, 0), int(data["volume"]))
    totals: Counter[tuple[str, str]] = Counter()
    for (window, coin, _), volume in last.items():
        totals[(window, coin)] += volume
    return dict(totals)


@pytest.mark.timeout(1200)  # two workers, each with a scoring child, on a shared 2-core box
def test_second_worker_joins_midstream_exact_counters(
    stream_settings: Settings,  # noqa: F811
    registered_model: tuple[str, list[str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = stream_settings
    name, _ = registered_model
    prefix = settings.redis.key_prefix
    channel = f"{prefix}:live:counters"
    posts = [english_post(i, sid=f"t3_s{i}") for i in range(FIRST + SECOND)]
    expected = {p.source_id for p in posts}

    subscriber = Subscriber(settings.redis.dsn, prefix)
    subscriber.start()
    reader = OutputReader(settings)
    workers: list[WorkerProcess] = []
    try:
        with EventProducer(settings, component="test") as producer:
            for post in posts[:FIRST]:
                producer.send(RAW_REDDIT.name(settings), post)
        workers.append(start(settings, name, tmp_path / "worker1.log"))
        workers[0].wait_ready(timeout_s=180)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(reader.scored) < FIRST // 5:
            reader.poll(0.1)
        scored_before_join = len(reader.ids())
        assert 0 < scored_before_join < FIRST, f"join not mid-stream; {workers[0].tail()}"

        workers.append(start(settings, name, tmp_path / "worker2.log"))  # same group: a rebalance
        workers[1].wait_ready(timeout_s=180)
        with EventProducer(settings, component="test") as producer:
            for post in posts[FIRST:]:
                producer.send(RAW_REDDIT.name(settings), post)
        missing = reader.wait_for(expected, timeout_s=300)
        assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}\n{workers[1].diagnose()}"
        time.sleep(5)  # the last batches' counters reach Redis
        reader.poll()
        shares = [agent_events_in(w, "count") for w in workers]
    finally:
        for worker in workers:
            worker.stop()
        subscriber.stop.set()
        subscriber.join(5)
        reader.close()

    # every input has exactly one outcome; the idempotent downstream (upsert by id) has each once
    assert not reader.dead, reader.dead[:3]
    downstream = {r["source_id"]: r for r in reader.scored}
    assert set(downstream) == expected
    copies = Counter(r["source_id"] for r in reader.scored)
    repeats = {sid: n for sid, n in copies.items() if n > 1}
    # a copy on the topic only when the rebalance fell between a batch's ack and its claim
    assert len(repeats) <= 2 * 2 * BATCH, repeats
    print(f"joined after {scored_before_join} scored; ids repeated on scored.posts: {len(repeats)}")

    # both workers counted: the coins' partitions were shared out
    assert all(n > 0 for n in shares), f"count records taken per worker: {shares}"

    # exact per-coin counters: unique posts per coin, each counted once across the handover
    per_coin: Counter[str] = Counter()
    for record in downstream.values():
        per_coin.update([*record["coins"], ALL_COINS])
    counters = final_counters(subscriber.messages, channel)
    for window in ("1m", "5m"):
        got = {coin: n for (w, coin), n in counters.items() if w == window}
        assert got == dict(per_coin), f"{window}: counted {got}, unique posts {dict(per_coin)}"
    print(f"count records taken per worker: {shares}; unique posts per coin: {dict(per_coin)}")
