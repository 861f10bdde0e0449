"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil


def machine() -> str:
    """The CPU the figures were taken on: model name, cores and the vector extensions int8
    inference depends on (the same model ran twice as fast on an earlier, unrecorded host)."""
    name, flags = "unknown CPU", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == "unknown CPU":
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    extensions = "+".join(f for f in wanted if f in flags) or "no AVX2"
    return f"{name}, {os.cpu_count()} CPUs, {extensions}"


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` (a p99) is the median of the repeats: a whole run, so its
    columns agree with each other; ``{key}_all`` lists every repeat's value."""
    ordered = sorted(runs, key=lambda r: r[key] if r[key] is not None else float("inf"))
    median = ordered[(len(ordered) - 1) // 2]
    return {**median, f"{key}_all": [r[key] for r in runs], "repeats": len(runs)}


def tree_cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and all their children.

    Reported beside latencies because it does not depend on what else the machine runs.
    """
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


COINS = ["Bitcoin", "Ethereum", "$SOL", "Dogecoin", "BTC", "ETH", "Cardano", "XRP"]
MOODS = [
    "looks really strong this morning",
    "is dumping again and I am worried",
    "keeps moving sideways, boring week",
    "just broke resistance, bulls are back",
    "feels overvalued at these levels honestly",
    "fees are way too high right now",
]


def unique_post(i: int, run: str, author: str = "bench") -> Any:
    """Post ``i`` of a load run: a unique id and text (nothing de-duplicates it), a coin each."""
    from schemas.events import RedditPost

    now = datetime.now(UTC)
    return RedditPost(
        source_id=f"t3_{run}{i:x}",
        event_time=now,
        ingest_time=now,
        subreddit="CryptoCurrency",
        title=f"{COINS[i % len(COINS)]} {MOODS[(i // len(COINS)) % len(MOODS)]}, update {i} from {run}",
        author=f"{author}{i % 50}",
    )
