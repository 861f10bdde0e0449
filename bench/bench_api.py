"""API latency benchmark: wrk from a second process against ``cryptopulse api`` (2 workers).

Seeds realistic views in Redis under a throw-away key prefix, starts the API through
the same code path as ``cryptopulse api`` (uvicorn, uvloop, httptools, N workers), then
runs wrk at paced request rates on two endpoints and reports achieved rate and latency
percentiles. Plain wrk has no fixed-rate mode (wrk2 is not packaged), so requests are
paced with wrk's Lua ``delay()`` hook: each of C connections waits on average C/rate
seconds between requests, uniformly jittered (0.5-1.5x) so that the connections do not
fire in lock-step bursts (a fixed delay keeps all C connections synchronised from the
start, which measures queueing behind a burst of C requests, not a steady rate). Each
configuration runs ``--repeats`` times and the table gives the median run. Latency is
measured from each send (no coordinated-omission correction), which is accurate while
the server keeps up with the offered rate.

    .venv/bin/python bench/bench_api.py [--rates 500 1000] [--duration 20] [--repeats 3] [--workers 2]

Prints a Markdown table and writes JSON to ``--out`` (default bench/results/api.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import median_run, tree_cpu_s  # noqa: E402
from core.settings import get_settings  # noqa: E402
from tests.api.seed import COINS, seed_views  # noqa: E402
from tests.ports import free_port  # noqa: E402
from views import delete_prefixed_keys  # noqa: E402

log = logging.getLogger("bench_api")

LUA = """
local paths = {}
for p in string.gmatch(os.getenv("BENCH_PATHS"), "[^,]+") do table.insert(paths, p) end
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS"))
local i = 0
math.randomseed(os.time())
function request()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
function delay()
  return math.floor(delay_ms * (0.5 + math.random()))
end
"""

ENDPOINTS = {
    "/v1/coins/{coin}/sentiment": ",".join(f"/v1/coins/{c}/sentiment?window=5m" for c in COINS),
    "/v1/trending": "/v1/trending?window=1h",
}
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not match:
        raise ValueError(f"unparsable wrk latency {value!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> dict[str, Any]:
    """Achieved rate, percentiles (ms), errors from ``wrk --latency`` output."""
    result: dict[str, Any] = {}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M)
        result[f"p{pct}_ms"] = round(_ms(m[1]), 3) if m else None
    m = re.search(r"Requests/sec:\s+([\d.]+)", output)
    result["achieved_rps"] = float(m[1]) if m else 0.0
    m = re.search(r"(\d+) requests in", output)
    result["requests"] = int(m[1]) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["non_2xx"] = int(m[1]) if m else 0
    m = re.search(r"Socket errors: (.*)", output)
    result["socket_errors"] = m[1].strip() if m else ""
    m = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", output)
    result["max_ms"] = round(_ms(m[3]), 3) if m else None
    return result


def start_api(port: int, workers: int, prefix: str, home: Path) -> subprocess.Popen[bytes]:
    """``cryptopulse api`` in a child process (its own env: bench prefix, no model, no auth)."""
    env = {
        **os.environ,
        "CRYPTOPULSE_REDIS__KEY_PREFIX": prefix,
        "CRYPTOPULSE_API__AUTH_ENABLED": "false",
        # wrk sends every request from one address: measure serving, not the per-client limit.
        "CRYPTOPULSE_API__ANONYMOUS_RATE_LIMIT_PER_MINUTE": "0",
        "CRYPTOPULSE_MODEL__URI": str(home / "no-model"),  # the read path does not need the model
        "CRYPTOPULSE_HOME": str(home),
        "CRYPTOPULSE_LOG_LEVEL": "WARNING",
    }
    code = f"from api.cli import api; api(host='127.0.0.1', port={port}, workers={workers})"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO)  # nosec B603 # our interpreter running our own code string (port and workers are ints)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("API exited during start-up")
        time.sleep(0.3)
    proc.terminate()
    raise TimeoutError("API not ready after 60s")


def run_wrk(
    url: str,
    paths: str,
    rate: int,
    connections: int,
    duration: int,
    lua: Path,
    server: subprocess.Popen[bytes],
) -> dict[str, Any]:
    """One paced wrk run; adds the server's CPU cost per request (independent of machine load)."""
    delay_ms = max(0, round(connections * 1000 / rate))
    env = {**os.environ, "BENCH_PATHS": paths, "BENCH_DELAY_MS": str(delay_ms)}
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "2s",
        "-s",
        str(lua),
        url,
    ]
    cpu0 = tree_cpu_s([server.pid])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout  # nosec B603 # wrk with the benchmark's own fixed options, no input
    cpu = tree_cpu_s([server.pid]) - cpu0
    row = {"target_rps": rate, "connections": connections, "delay_ms": delay_ms, **parse_wrk(out)}
    row["server_cpu_ms_per_request"] = round(1000 * cpu / row["requests"], 3) if row["requests"] else None
    row["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[500, 1000])
    parser.add_argument("--duration", type=int, default=20, help="seconds per run")
    parser.add_argument(
        "--connections", type=int, default=100, help="more connections: pacing closer to target"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration; median kept")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "api.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    settings = get_settings()
    prefix = f"bench-api-{os.getpid()}"
    client = redis.Redis.from_url(settings.redis.dsn)
    seed_views(client, prefix, points=200)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cp-bench-") as tmp:
        lua = Path(tmp) / "paced.lua"
        lua.write_text(LUA)
        port = free_port()
        proc = start_api(port, args.workers, prefix, Path(tmp))
        url = f"http://127.0.0.1:{port}"
        try:
            for paths in ENDPOINTS.values():  # warm-up: connections, JIT-free but caches and pools
                run_wrk(url, paths, 200, 10, 3, lua, proc)
            for endpoint, paths in ENDPOINTS.items():
                for rate in args.rates:
                    runs = []
                    for _ in range(args.repeats):
                        run = run_wrk(url, paths, rate, args.connections, args.duration, lua, proc)
                        log.info("%s @ %d req/s: %s", endpoint, rate, run)
                        runs.append(run)
                    results.append({"endpoint": endpoint, **median_run(runs, "p99_ms"), "runs": runs})
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            delete_prefixed_keys(client, prefix)
    meta = {
        "workers": args.workers,
        "repeats": args.repeats,
        "duration_s": args.duration,
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["bench/bench_api.py", *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [
        "| endpoint | target req/s | achieved req/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx "
        "| server CPU ms/req | load avg | p99 of each run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| `{r['endpoint']}` | {r['target_rps']} | {r['achieved_rps']:.0f} | {r['p50_ms']} | "
            f"{r['p90_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['non_2xx']} | "
            f"{r['server_cpu_ms_per_request']} | {r['load_avg_1m']} | "
            f"{', '.join(str(p) for p in r['p99_ms_all'])} |"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    ok = all(r["non_2xx"] == 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
