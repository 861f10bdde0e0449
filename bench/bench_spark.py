"""Spark benchmark: backfill throughput over a large lake, and streaming end-to-end latency.

1. Backfill: ``--events`` (default 1,000,000) scored posts, plus one price tick per coin
   per minute, are generated straight into the events lake (Parquet, same layout the
   streaming archive writes; generating them through Kafka would measure the producer,
   not Spark) over ``--days`` days of event time. ``run_backfill(source="lake")``
   recomputes every window and replaces Redis and lake partitions; rows/s = events read
   / wall time of the whole backfill (read, parse, aggregate, finish, write). ``--runs N``
   runs it N times in one Spark session: the first pays the JVM's warm-up, the others not.
2. Streaming latency: the streaming job runs on fresh topics (processing-time trigger
   ``--trigger``, by default the setting's default); ``--probes`` scored posts are
   appended to Kafka one at a time and the time from append (delivery confirmed) to the
   matching TrendWindow published on
   ``{prefix}:live:trends`` (the Redis views are written in the same step) is measured.

    .venv/bin/python bench/bench_spark.py --events 1000000 --days 2 --probes 20

Everything runs under a temporary home, topic prefix and Redis key prefix, removed after.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.kafka import EventProducer, ensure_topics, wait_for_broker  # noqa: E402
from core.settings import Settings, get_settings, load_settings  # noqa: E402
from schemas.events import ScoredPost, SentimentLabel, Source, content_hash  # noqa: E402
from schemas.redis_keys import RedisKeys  # noqa: E402
from schemas.topics import ALERTS, RAW_PRICES, SCORED_POSTS, TRENDS  # noqa: E402
from views import delete_prefixed_keys  # noqa: E402

COINS = ["bitcoin", "ethereum", "solana", "ripple", "cardano", "dogecoin", "tron", "litecoin"]
SOURCES = ["reddit", "news", "replay"]
LABELS = ["negative", "neutral", "positive"]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _take(column: Any, rows: Any) -> Any:
    import numpy as np

    return column[rows] if isinstance(column, np.ndarray) else [column[i] for i in rows]


def generate_lake(settings: Settings, events: int, days: int, start: datetime, chunk: int = 1_000_000) -> int:
    """Write ``events`` posts (+ minute price ticks) into the events lake in the typed layout
    the streaming archive writes (``spark_jobs.lake.event_arrow_schema``), ``chunk`` posts
    per file and day at most (memory stays flat for 10^7 events); returns rows written."""
    import numpy as np

    rng = np.random.default_rng(7)
    span_ms = days * 86_400_000
    t0 = int(start.timestamp() * 1000)
    written = 0
    for first in range(0, events, chunk):
        n = min(chunk, events - first)
        times = np.sort(rng.integers(0, span_ms, n)) + t0
        coin_a = rng.integers(0, len(COINS), n)
        two = rng.random(n) < 0.25
        coin_b = (coin_a + 1 + rng.integers(0, len(COINS) - 1, n)) % len(COINS)
        scores = np.round(rng.uniform(-1, 1, n), 4)
        ids = range(first, first + n)
        posts = {
            "source_id": [f"t3_b{i:x}" for i in ids],
            "event_time": times * 1000,
            "ingest_time": (times + 500) * 1000,
            "source": np.array(SOURCES)[rng.integers(0, len(SOURCES), n)],
            "text": [f"bench post {i}" for i in ids],
            "coins": [
                [COINS[a], COINS[b]] if both else [COINS[a]]
                for a, b, both in zip(coin_a.tolist(), coin_b.tolist(), two.tolist(), strict=True)
            ],
            "label": np.array(LABELS)[np.where(scores < -0.2, 0, np.where(scores > 0.2, 2, 1))],
            "score": scores,
            "confidence": np.round(rng.uniform(0.3, 1, n), 4),
            "p_negative": np.maximum(-scores, 0.0),
            "p_neutral": np.zeros(n),
            "p_positive": np.maximum(scores, 0.0),
            "model_version": ["bench"] * n,
        }
        written += _write_days(settings, "post", posts, times, t0, f"part-bench-{first // chunk}")
    minutes = np.arange(days * 1440)
    tick_ms = np.repeat(t0 + minutes * 60_000, len(COINS))
    tick_coin = np.tile(np.arange(len(COINS)), len(minutes))
    tick_minute = np.repeat(minutes, len(COINS))
    ticks = {
        "source_id": [f"{COINS[c]}:{iso(int(ms))}" for c, ms in zip(tick_coin, tick_ms, strict=True)],
        "event_time": tick_ms * 1000,
        "ingest_time": tick_ms * 1000,
        "coin": np.array(COINS)[tick_coin],
        "price": 100.0 * (tick_coin + 1) * (1 + 0.01 * np.sin(tick_minute / 30 + tick_coin)),
    }
    return written + _write_days(settings, "price", ticks, tick_ms, t0, "part-bench")


def _write_days(
    settings: Settings, kind: str, columns: dict[str, Any], stamps: Any, t0: int, name: str
) -> int:
    """One typed Parquet file per event day of ``columns`` (absent fields are null columns)."""
    import numpy as np
    import pyarrow as pa

    from spark_jobs.lake import event_arrow_schema, events_path, write_event_file

    schema = event_arrow_schema()
    days_of = (stamps - t0) // 86_400_000
    written = 0
    for day in np.unique(days_of):
        rows = np.flatnonzero(days_of == day)
        table = pa.table(
            {
                field.name: pa.array(_take(columns[field.name], rows), type=field.type)
                if field.name in columns
                else pa.nulls(len(rows), type=field.type)
                for field in schema
            },
            schema=schema,
        )
        folder = events_path(settings) / f"kind={kind}" / f"date={iso(t0 + int(day) * 86_400_000)[:10]}"
        write_event_file(table, folder, name)
        written += len(rows)
    return written


def bench_backfill(
    settings: Settings, events: int, days: int, runs: int = 1, remote: str | None = None
) -> dict[str, Any]:
    """Generate the lake, then run the backfill ``runs`` times in one Spark session: the
    first run pays the JVM's warm-up (what a one-off ``cryptopulse backfill`` pays), later
    ones show what a long-lived session (a notebook, a cluster's driver) pays. With
    ``remote`` (``sc://HOST:PORT``, e.g. the running ``spark stream``'s endpoint) the
    queries run in that application through Spark Connect, as ``cryptopulse backfill``
    does when it finds one."""
    from spark_jobs.backfill import redis_client, run_backfill
    from spark_jobs.session import build_spark, read_connect_token, remote_spark

    start = datetime(2026, 1, 1, tzinfo=UTC)
    t = time.perf_counter()
    rows = generate_lake(settings, events, days, start)
    gen_s = time.perf_counter() - t
    print(f"generated {rows:,} lake rows ({events:,} posts) in {gen_s:.1f}s", flush=True)
    if remote:
        # the running stream job's token, left in its home (the default settings' one)
        spark = remote_spark(remote, read_connect_token(get_settings()))
    else:
        spark = build_spark(settings, app_name="bench-spark-backfill")
    client = redis_client(settings)
    results = []

    def stamp(t0: float) -> Callable[[str, int], None]:
        return lambda msg, n: print(f"  [{n}/5] +{time.perf_counter() - t0:.1f}s {msg}", flush=True)

    for run in range(1, runs + 1):
        t0 = time.perf_counter()
        result = run_backfill(
            spark,
            settings,
            start.date(),
            (start + timedelta(days=days - 1)).date(),
            source="lake",
            client=client,
            progress=stamp(t0),
        )
        out = {
            "run_in_session": run,
            "lake_rows": rows,
            "events_read": result.events,
            "windows": result.trends,
            "seconds": round(result.seconds, 1),
            "rows_per_s": round(result.events / result.seconds),
        }
        print(f"backfill: {out}", flush=True)
        results.append(out)
    return {**results[0], "runs": results}


def bench_latency(settings: Settings, probes: int) -> dict[str, Any]:
    from spark_jobs.session import build_spark
    from spark_jobs.stream import redis_client, start_stream

    # Every topic the streaming job reads or writes (the sink publishes windows and alerts).
    ensure_topics(settings, [SCORED_POSTS, RAW_PRICES, TRENDS, ALERTS])
    spark = build_spark(settings, app_name="bench-spark-stream")
    client = redis_client(settings)
    job = start_stream(spark, settings, archive=False, client=redis_client(settings))
    channel = RedisKeys(settings.redis.key_prefix).live_trends()
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    seen: dict[str, float] = {}
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            msg = pubsub.get_message(timeout=0.2)
            if msg and msg["type"] == "message":
                window = json.loads(msg["data"])
                if window["window"] == "1m":
                    seen.setdefault(window["ingest_time"], time.perf_counter())

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    producer = EventProducer(settings, component="bench", **{"linger.ms": 0})
    topic = SCORED_POSTS.name(settings)
    # Warm-up: the first micro-batch compiles the plan.
    latencies: list[float] = []
    for i in range(probes + 2):
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        text = f"latency probe {i} bitcoin"
        record = ScoredPost(
            source_id=f"t3_probe{uuid.uuid4().hex[:10]}",
            event_time=now,
            ingest_time=now,
            source=Source.REPLAY,
            text=text,
            original_length=len(text),
            coins=["bitcoin"],
            content_hash=content_hash(text),
            label=SentimentLabel.POSITIVE,
            score=0.5,
            confidence=0.9,
            p_negative=0.1,
            p_neutral=0.2,
            p_positive=0.6,
            model_version="bench",
        )
        key = iso(int(now.timestamp() * 1000))
        producer.send(topic, record)
        producer.flush()
        sent = time.perf_counter()
        deadline = sent + 120
        while key not in seen and time.perf_counter() < deadline:
            time.sleep(0.01)
        if key in seen and i >= 2:
            latencies.append(seen[key] - sent)
        time.sleep(0.3)
    stop.set()
    thread.join()
    job.stop()
    latencies.sort()
    out = {
        "trigger": settings.spark.trigger_interval,
        "probes": len(latencies),
        "p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 2) if latencies else None,
        "max_s": round(latencies[-1], 2) if latencies else None,
    }
    print(f"latency: {out}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument(
        "--runs", type=int, default=1, help="backfills in one Spark session (the first pays the JVM warm-up)"
    )
    parser.add_argument(
        "--remote",
        default=None,
        help="run the backfills in a running application through Spark Connect (sc://HOST:PORT; "
        "the streaming job serves sc://localhost:15002, with the token it leaves in its home)",
    )
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument(
        "--trigger", default=None, help="trend query trigger (default: the setting's default)"
    )
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    if args.remote and not args.skip_latency:
        # A Spark Connect session puts this process's PySpark into Connect mode for good.
        parser.error("--remote measures backfills only: add --skip-latency")
    base = get_settings()
    wait_for_broker(base)
    tag = uuid.uuid4().hex[:8]
    home = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    settings = load_settings(
        home=home,
        kafka={**base.kafka.model_dump(), "topic_prefix": f"bench-spark-{tag}"},
        redis={**base.redis.model_dump(), "key_prefix": f"bench-spark-{tag}"},
        spark={**base.spark.model_dump(), **({"trigger_interval": args.trigger} if args.trigger else {})},
    )
    results: dict[str, Any] = {}
    try:
        if not args.skip_backfill:
            results["backfill"] = bench_backfill(settings, args.events, args.days, args.runs, args.remote)
        if not args.skip_latency:
            results["latency"] = bench_latency(settings, args.probes)
    finally:
        from spark_jobs.stream import redis_client

        client = redis_client(settings)
        delete_prefixed_keys(client, settings.redis.key_prefix)
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
