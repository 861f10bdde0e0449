"""Short chaos run: SIGKILL the stream worker's scoring child, then Redis, under load.

Runs ``bench/chaos.py`` (a private supervisord, Redis, worker and API on free ports, the
shared broker under a throw-away topic prefix) as a subprocess, so its teardown runs in
its own process and the shared platform is never touched. Every input must end scored or
dead-lettered, and the API must answer 503 with Retry-After, never 500, while Redis is away.

A SIGKILL of the worker itself is covered by ``tests/stream_processors/test_integration.py``
(``test_sigkill_midstream_loses_nothing``, with faust's restart seek slowed down to widen the
window that once lost records), and every component by the full run in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

CHAOS = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def test_scoring_child_and_redis_kills_lose_nothing(
    platform: Settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "chaos.json"
    argv = [
        sys.executable,
        str(CHAOS),
        "--components",
        "scoring",
        "redis",
        "--shared-kafka",
        "--no-views",
        "--rate",
        "5",
        "--phase-s",
        "16",
        "--recover-s",
        "240",
        "--drain-s",
        "180",
        "--model",
        str(tiny_model_dir),
        "--json",
        str(out),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=900)  # ~3 min on an idle machine
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # chaos.py tears its private platform down on SIGTERM
        output, _ = process.communicate(timeout=120)
        pytest.fail(f"chaos run timed out:\n{output[-4000:]}")
    assert out.exists(), output[-4000:]
    result = json.loads(out.read_text())
    rows = {row["component"]: row for row in result["rows"]}
    assert set(rows) == {"scoring", "redis"}, output[-4000:]
    for name, row in rows.items():
        assert row["recovered_after_s"] is not None, f"{name} did not recover:\n{output[-4000:]}"
        assert row["inputs"] > 0, f"{name}: no inputs during its phase"
        assert row["lost"] == 0, f"{name}: {row['lost']} inputs lost:\n{output[-4000:]}"
        assert row["conflicts"] == 0, f"{name}: ids both scored and dead-lettered"
    assert result["api_500_total"] == 0, result["api_status_counts"]
    assert rows["redis"]["api_503"] > 0, f"no 503 while Redis was away: {result['api_status_counts']}"
    assert rows["redis"]["api_503_without_retry_after"] == 0
    assert result["missing_after_drain"] == 0
    assert process.returncode == 0, output[-4000:]
