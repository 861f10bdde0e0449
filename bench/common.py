"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import psutil


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
