"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

from typing import Any

import psutil


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
