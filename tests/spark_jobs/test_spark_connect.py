"""``cryptopulse backfill`` in the streaming job's application, through Spark Connect.

An application started like ``spark stream``'s (``build_spark(..., connect_server=True)``)
serves Spark Connect on a free port; the real CLI, told only that port, must find it
(``backfill_remote = auto``), run the backfill there and leave the same Redis state and
lake as an in-process local[2] backfill of the same topics, and the application must
still serve afterwards (the CLI releases its session, it does not stop the application).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from spark_jobs.backfill import run_backfill
from tests.ports import free_port
from tests.spark_jobs.conftest import T0, produce
from tests.spark_jobs.test_backfill import dataset, lake_rows, views
from tests.spark_jobs.test_standalone_cluster import REPO, cluster_env, run_cli, twin_settings, unprefixed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER = """
import signal, sys
from core.settings import load_settings
from spark_jobs.session import build_spark
spark = build_spark(load_settings(), app_name="test-connect-server", connect_server=True)
print("serving", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
spark.stop()
"""


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def connect_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Spark application serving Spark Connect, in its own process group."""
    root = tmp_path_factory.mktemp("connect")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CRYPTOPULSE_")},
        "CRYPTOPULSE_HOME": str(root / "home"),
        "CRYPTOPULSE_SPARK__CONNECT_PORT": str(port),
        "PYTHONPATH": str(REPO),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    log = (root / "server.log").open("ab")
    proc = subprocess.Popen(  # nosec B603  # this interpreter, a fixed script of the project's own
        [sys.executable, "-c", SERVER], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no Spark Connect endpoint:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        log.close()


@pytest.mark.timeout(1200)
def test_a_backfill_through_the_streams_endpoint_equals_a_local_one(
    spark: Any, spark_settings: Settings, redis_client: Any, connect_port: int, tmp_path: Path
) -> None:
    from views import delete_prefixed_keys

    local, r = spark_settings, redis_client
    remote = twin_settings(local, tmp_path / "connect-home", "connect")
    env = {
        **cluster_env(remote, local.spark.master),
        "CRYPTOPULSE_SPARK__BACKFILL_REMOTE": "auto",
        "CRYPTOPULSE_SPARK__CONNECT_PORT": str(connect_port),
    }
    day = T0.date().isoformat()
    produce(local, [x for x in dataset() if x.event_time < T0 + timedelta(minutes=15)])
    try:
        run_backfill(spark, local, T0.date(), T0.date(), source="kafka", client=r)
        stdout = run_cli(["backfill", "--from", day, "--to", day, "--source", "kafka"], env, tmp_path)
        assert f"runs in the Spark application at sc://127.0.0.1:{connect_port}" in stdout, stdout
        backfilled = unprefixed(views(r, local, internal=True), local.redis.key_prefix)
        assert any(":trend:ts:1h_5m:" in k for k in backfilled)
        assert unprefixed(views(r, remote, internal=True), remote.redis.key_prefix) == backfilled
        assert lake_rows(spark, remote) == lake_rows(spark, local)
        assert _answers(connect_port)  # the CLI released its session; the application serves on
    finally:
        delete_prefixed_keys(r, remote.redis.key_prefix)
