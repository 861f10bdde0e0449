"""Spark benchmark: backfill throughput over a large lake, and streaming end-to-end latency.

1. Backfill: ``--events`` (default 1,000,000) scored posts, plus one price tick per coin
   per minute, are generated straight into the events lake (Parquet, same layout the
   streaming archive writes; generating them through Kafka would measure the producer,
   not Spark) over ``--days`` days of event time. ``run_backfill(source="lake")``
   recomputes every window and replaces Redis and lake partitions; rows/s = events read
   / wall time of the whole backfill (read, parse, aggregate, finish, write).
2. Streaming latency: the streaming job runs on fresh topics (processing-time trigger
   ``--trigger``); ``--probes`` scored posts are appended to Kafka one at a time and the
   time from append (delivery confirmed) to the matching TrendWindow published on
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.kafka import EventProducer, ensure_topics, wait_for_broker  # noqa: E402
from core.settings import Settings, get_settings, load_settings  # noqa: E402
from schemas.events import ScoredPost, SentimentLabel, Source, content_hash  # noqa: E402
from schemas.redis_keys import RedisKeys  # noqa: E402
from schemas.topics import RAW_PRICES, SCORED_POSTS  # noqa: E402
from views import delete_prefixed_keys  # noqa: E402

COINS = ["bitcoin", "ethereum", "solana", "ripple", "cardano", "dogecoin", "tron", "litecoin"]
SOURCES = ["reddit", "news", "replay"]
LABELS = ["negative", "neutral", "positive"]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def generate_lake(settings: Settings, events: int, days: int, start: datetime) -> int:
    """Write ``events`` posts (+ minute price ticks) into the events lake; returns rows written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from spark_jobs.lake import events_path

    root = events_path(settings)
    rng = np.random.default_rng(7)
    span_ms = days * 86_400_000
    t0 = int(start.timestamp() * 1000)
    times = np.sort(rng.integers(0, span_ms, events)) + t0
    coin_a = rng.integers(0, len(COINS), events)
    two = rng.random(events) < 0.25
    coin_b = (coin_a + 1 + rng.integers(0, len(COINS) - 1, events)) % len(COINS)
    scores = np.round(rng.uniform(-1, 1, events), 4)
    conf = np.round(rng.uniform(0.3, 1, events), 4)
    srcs = rng.integers(0, len(SOURCES), events)
    written = 0
    by_day: dict[tuple[str, str], list[tuple[str, int, str]]] = {}
    for i in range(events):
        ms = int(times[i])
        coins = f'["{COINS[coin_a[i]]}","{COINS[coin_b[i]]}"]' if two[i] else f'["{COINS[coin_a[i]]}"]'
        s = float(scores[i])
        label = LABELS[0 if s < -0.2 else 2 if s > 0.2 else 1]
        value = (
            f'{{"source_id":"t3_b{i:x}","event_time":"{iso(ms)}","ingest_time":"{iso(ms + 500)}",'
            f'"source":"{SOURCES[srcs[i]]}","text":"bench post {i}","coins":{coins},"label":"{label}",'
            f'"score":{s},"confidence":{float(conf[i])},"p_negative":{max(-s, 0.0)},"p_neutral":0.0,'
            f'"p_positive":{max(s, 0.0)},"model_version":"bench"}}'
        )
        by_day.setdefault(("post", iso(ms)[:10]), []).append((f"t3_b{i:x}", ms, value))
    for minute in range(days * 1440):
        ms = t0 + minute * 60_000
        for k, coin in enumerate(COINS):
            price = 100.0 * (k + 1) * (1 + 0.01 * np.sin(minute / 30 + k))
            sid = f"{coin}:{iso(ms)}"
            value = (
                f'{{"source_id":"{sid}","event_time":"{iso(ms)}","ingest_time":"{iso(ms)}",'
                f'"coin":"{coin}","price":{price:.6f}}}'
            )
            by_day.setdefault(("price", iso(ms)[:10]), []).append((sid, ms, value))
    for (kind, day), rows in by_day.items():
        folder = root / f"kind={kind}" / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "source_id": [r[0] for r in rows],
                "event_time": pa.array([r[1] for r in rows], type=pa.timestamp("ms", tz="UTC")).cast(
                    pa.timestamp("us", tz="UTC")
                ),
                "value": [r[2] for r in rows],
            }
        )
        pq.write_table(table, folder / "part-bench.parquet", compression="zstd")
        written += len(rows)
    return written


def bench_backfill(settings: Settings, events: int, days: int) -> dict[str, Any]:
    from spark_jobs.backfill import redis_client, run_backfill
    from spark_jobs.session import build_spark

    start = datetime(2026, 1, 1, tzinfo=UTC)
    t = time.perf_counter()
    rows = generate_lake(settings, events, days, start)
    gen_s = time.perf_counter() - t
    print(f"generated {rows:,} lake rows ({events:,} posts) in {gen_s:.1f}s", flush=True)
    spark = build_spark(settings, app_name="bench-spark-backfill")
    client = redis_client(settings)
    t0 = time.perf_counter()
    result = run_backfill(
        spark,
        settings,
        start.date(),
        (start + timedelta(days=days - 1)).date(),
        source="lake",
        client=client,
        progress=lambda msg, n: print(f"  [{n}/6] +{time.perf_counter() - t0:.1f}s {msg}", flush=True),
    )
    out = {
        "lake_rows": rows,
        "events_read": result.events,
        "windows": result.trends,
        "seconds": round(result.seconds, 1),
        "rows_per_s": round(result.events / result.seconds),
    }
    print(f"backfill: {out}", flush=True)
    return out


def bench_latency(settings: Settings, probes: int) -> dict[str, Any]:
    from spark_jobs.session import build_spark
    from spark_jobs.stream import redis_client, start_stream

    ensure_topics(settings, [SCORED_POSTS, RAW_PRICES])
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
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--trigger", default="1 second")
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    base = get_settings()
    wait_for_broker(base)
    tag = uuid.uuid4().hex[:8]
    home = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    settings = load_settings(
        home=home,
        kafka={**base.kafka.model_dump(), "topic_prefix": f"bench-spark-{tag}"},
        redis={**base.redis.model_dump(), "key_prefix": f"bench-spark-{tag}"},
        spark={**base.spark.model_dump(), "trigger_interval": args.trigger},
    )
    results: dict[str, Any] = {}
    try:
        if not args.skip_backfill:
            results["backfill"] = bench_backfill(settings, args.events, args.days)
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
