"""Stream benchmark: sustained rates through the real broker and the real worker.

For each rate (default 200, 500 and 1,000 events/s) a paced producer sends unique
English Reddit posts to raw.reddit for ``--duration`` seconds, stamping
``ingest_time`` at send. A reader consumes scored.posts and records, per event,
``received - ingest_time`` (producer timestamp -> scored record readable downstream).
A rate "holds" when every event arrives, the achieved output rate keeps up, and
p99 < 1 s. The worker is a real ``python -m stream_processors worker`` subprocess
with the production model URI (or a tiny model of the same architecture when the
registry has no champion yet: inference cost depends on the architecture, not the
weights).

    .venv/bin/python bench/bench_stream.py --rates 200 500 1000 --duration 30 [--repeats 3]

With ``--repeats`` each rate runs that many times (fresh topics and worker each) and the
table shows the run with the median p99 ("holds" is that run's verdict) and every p99.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine, median_run, tree_cpu_s, unique_post  # noqa: E402
from core.kafka import EventProducer, ensure_topics, wait_for_broker  # noqa: E402
from core.settings import Settings, get_settings, load_settings  # noqa: E402
from schemas.topics import CATALOG, RAW_REDDIT  # noqa: E402
from tests.cleanup import discard_run_data  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.stream_processors.harness import OutputReader, WorkerProcess, py_spy, worker_env  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def resolve_model(settings: Settings, requested: str | None) -> tuple[str, str, str | None]:
    """The model URI to benchmark, a note on where it came from, and the name to delete after."""
    if requested:
        return requested, "given", None
    try:
        from model_export.registry import champion_version

        if champion_version(settings):
            return settings.model.uri, "registry champion", None
    except Exception:  # nosec B110 # no reachable registry or no champion: the bench registers its own tiny model below
        pass
    from tests.stream_processors.model_fixture import register_versions, tiny_model_dir

    name = f"bench-stream-{uuid.uuid4().hex[:6]}"
    register_versions(settings, tiny_model_dir(settings), name)
    note = "tiny model, same architecture (no champion registered)"
    return f"models:/{name}@champion", note, name


def run_rate(
    settings: Settings, reader: OutputReader, rate: int, duration_s: float, drain_s: float
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    topic = RAW_REDDIT.name(settings)
    sent: list[str] = []
    producer = EventProducer(settings, component="bench", **{"linger.ms": 2})
    tick = 0.01
    started_epoch = time.time()
    started = time.perf_counter()
    next_tick = started
    i = 0
    while (now := time.perf_counter()) - started < duration_s:
        due = int((now - started) * rate) - i
        for _ in range(max(0, due)):
            record = unique_post(i, run)
            producer.send(topic, record)
            sent.append(record.source_id)
            i += 1
        reader.poll(0)
        next_tick += tick
        time.sleep(max(0.0, next_tick - time.perf_counter()))
    producer.flush()
    produce_s = time.perf_counter() - started
    missing = reader.wait_for(sent, timeout_s=drain_s)
    finished = time.perf_counter() - started
    wanted = set(sent)
    latencies: list[float] = []
    scored_latencies: list[float] = []
    for scored_record in reader.scored:
        sid = scored_record["source_id"]
        if sid in wanted:
            ingest = datetime.fromisoformat(scored_record["ingest_time"].replace("Z", "+00:00")).timestamp()
            scored = datetime.fromisoformat(scored_record["scored_time"].replace("Z", "+00:00")).timestamp()
            latencies.append(reader.received_at[sid] - ingest)
            scored_latencies.append(scored - ingest)
            wanted.discard(sid)
    p99 = pct(latencies, 0.99)
    last_at = max((reader.received_at[sid] for sid in sent if sid in reader.received_at), default=None)
    return {
        "rate": rate,
        "sent": len(sent),
        "achieved_in_rate": round(len(sent) / produce_s, 1),
        # events scored per second from the first send to the last scored record
        "scored_per_s": round(len(latencies) / (last_at - started_epoch), 1) if last_at else 0.0,
        "received": len(latencies),
        "missing": len(missing),
        "drain_s": round(finished - produce_s, 2),
        "p50_s": round(pct(latencies, 0.5), 4),
        "p95_s": round(pct(latencies, 0.95), 4),
        "p99_s": round(p99, 4),
        "max_s": round(max(latencies, default=float("nan")), 4),
        "mean_s": round(statistics.fmean(latencies), 4) if latencies else None,
        "scored_p99_s": round(pct(scored_latencies, 0.99), 4),
        "holds": not missing and p99 < 1.0,
    }


def broker_pids() -> list[int]:
    """The local Kafka broker's JVM (its CPU per event is part of the pipeline's cost)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "kafka.Kafka" in cmdline:
            found.append(proc.pid)
    return found


def start_profiler(pid: int, svg: Path, duration_s: float) -> subprocess.Popen[bytes]:
    """py-spy samples the worker and its scoring child (``--subprocesses``) for the measured
    phase, without pausing them (``--nonblocking``), into a flame graph (SVG)."""
    svg.parent.mkdir(parents=True, exist_ok=True)
    argv = [py_spy(), "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", "100"]
    argv += ["--duration", str(int(duration_s)), "--format", "flamegraph", "--output", str(svg)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # nosec B603


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("CRYPTOPULSE_"):
            raise SystemExit(f"--worker-env wants CRYPTOPULSE_NAME=VALUE, got {pair!r}")
        env[key] = value
    return env


def bench_rate(base: Settings, rate: int, args: argparse.Namespace, model_uri: str) -> dict[str, Any]:
    """One rate on fresh topics with fresh worker(s): no backlog carried between rates."""
    tag = uuid.uuid4().hex[:8]
    home = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    settings = load_settings(
        home=home,
        kafka={**base.kafka.model_dump(), "topic_prefix": f"bench-{tag}"},
        redis={**base.redis.model_dump(), "key_prefix": f"bench-{tag}"},
    )
    ensure_topics(settings, CATALOG)
    extra = {"CRYPTOPULSE_STREAM__BATCH_SIZE": str(args.batch_size)} if args.batch_size else {}
    extra.update(parse_env(args.worker_env))
    workers = []
    for n in range(args.workers):
        port = free_port()
        env = worker_env(settings, model_uri=model_uri, web_port=port, **extra)
        workers.append(WorkerProcess(env, home / f"worker{n}.log", port))
    reader = OutputReader(settings)
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready(timeout_s=180)
        run_rate(settings, reader, 20, 5.0, 60.0)  # warm-up: assignment, first batches, caches
        worker_pids = [w.proc.pid for w in workers if w.proc is not None]
        brokers = broker_pids()
        cpu0, broker0 = tree_cpu_s(worker_pids), tree_cpu_s(brokers)
        graphs = (
            [args.profile / f"worker{n}-{rate}evs.svg" for n in range(len(worker_pids))]
            if args.profile
            else []
        )
        profilers = [
            start_profiler(pid, svg, args.duration) for pid, svg in zip(worker_pids, graphs, strict=False)
        ]
        result = run_rate(settings, reader, rate, args.duration, args.drain)
        for profiler, svg in zip(profilers, graphs, strict=False):
            profiler.wait(timeout=120)
            if svg.exists():  # no machine paths in a graph that may be committed
                svg.write_text(svg.read_text("utf-8").replace(f"{REPO}/", "").replace(f"{svg.parent}/", ""))
        events = max(1, result["received"])
        result["worker_cpu_ms_per_event"] = round(1000 * (tree_cpu_s(worker_pids) - cpu0) / events, 2)
        result["broker_cpu_ms_per_event"] = round(1000 * (tree_cpu_s(brokers) - broker0) / events, 2)
    finally:
        for worker in workers:
            worker.stop()
        reader.close()
        discard_run_data(settings)  # the run's topics, faust's changelogs, live keys
        shutil.rmtree(home, ignore_errors=True)
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    result["workers"] = args.workers
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[200, 500, 1000])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    parser.add_argument("--drain", type=float, default=30.0, help="seconds to wait for stragglers")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per rate (fresh topics and worker each); median p99 kept"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (<= partitions)")
    parser.add_argument("--model-uri", default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="write a py-spy flame graph of each worker (and its scoring child) per rate here",
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="CRYPTOPULSE_NAME=VALUE",
        help="setting for the worker processes (repeatable), e.g. CRYPTOPULSE_STREAM__BATCH_SIZE=128",
    )
    args = parser.parse_args()

    base = get_settings()
    wait_for_broker(base)
    model_uri, model_note, throwaway_model = resolve_model(base, args.model_uri)
    print(f"model {model_uri} ({model_note}); {args.workers} worker(s); {machine()}")
    results: list[dict[str, Any]] = []
    try:
        for rate in args.rates:
            runs = []
            for _ in range(args.repeats):
                run = bench_rate(base, rate, args, model_uri)
                print(json.dumps(run), flush=True)
                runs.append(run)
            result = median_run(runs, "p99_s")
            result["holds_all"] = [r["holds"] for r in runs]
            results.append(result)
    finally:
        if throwaway_model:
            from tests.stream_processors.model_fixture import delete_model

            delete_model(base, throwaway_model)
    held = [r["rate"] for r in results if r["holds"]]
    print(
        "\n| target (ev/s) | sent | received | p50 (s) | p95 (s) | p99 (s) | max (s) "
        "| scored/s | worker CPU ms/ev | broker CPU ms/ev | load avg | holds | p99 of each run (s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---|")
    for r in results:
        print(
            f"| {r['rate']} | {r['sent']} | {r['received']} | {r['p50_s']} | {r['p95_s']} | "
            f"{r['p99_s']} | {r['max_s']} | {r['scored_per_s']} | {r['worker_cpu_ms_per_event']} | "
            f"{r['broker_cpu_ms_per_event']} | {r['loadavg_1m']} | {'yes' if r['holds'] else 'no'} | "
            f"{', '.join(str(p) for p in r['p99_s_all'])} |"
        )
    print(f"\nhighest rate that holds (p99 < 1 s, nothing missing): {max(held) if held else 'none'}")
    if args.json:
        args.json.write_text(json.dumps({"model": model_uri, "results": results}, indent=2))


if __name__ == "__main__":
    main()
