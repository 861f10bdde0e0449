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

from core.settings import Settings, load_settings
from spark_jobs.backfill import run_backfill
from spark_jobs.session import read_connect_token
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


def project_env(home: Path) -> dict[str, str]:
    """A child process's environment: the project importable, its own home, loopback Spark."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("CRYPTOPULSE_")},
        "CRYPTOPULSE_HOME": str(home),
        "PYTHONPATH": str(REPO),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


def run_script(
    script: str, *args: str, env: dict[str, str], cwd: Path, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """``python -c script args...`` with this interpreter; its output is captured."""
    return subprocess.run(  # nosec B603  # this interpreter, a fixed script of the project's own
        [sys.executable, "-c", script, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A Spark application serving Spark Connect, in its own process group: its port and
    its home (where it leaves the endpoint's token)."""
    root = tmp_path_factory.mktemp("connect")
    port = free_port()
    env = {**project_env(root / "home"), "CRYPTOPULSE_SPARK__CONNECT_PORT": str(port)}
    log = (root / "server.log").open("ab")
    proc = subprocess.Popen(  # nosec B603  # this interpreter, a fixed script of the project's own
        [sys.executable, "-c", SERVER], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        # the endpoint is usable once the token is published, just after the port opens
        while not (_answers(port) and read_connect_token(load_settings(home=root / "home"))):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no Spark Connect endpoint:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield port, root / "home"
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
    spark: Any, spark_settings: Settings, redis_client: Any, connect_server: tuple[int, Path], tmp_path: Path
) -> None:
    from spark_jobs.session import lake_dir
    from views import delete_prefixed_keys

    connect_port, server_home = connect_server
    local, r = spark_settings, redis_client
    remote = twin_settings(local, tmp_path / "connect-home", "connect")
    env = {
        **cluster_env(remote, local.spark.master),
        # the stream's home (its token file), with a lake of this run's own
        "CRYPTOPULSE_HOME": str(server_home),
        "CRYPTOPULSE_SPARK__LAKE_DIR": str(lake_dir(remote)),
        "CRYPTOPULSE_SPARK__BACKFILL_REMOTE": "auto",
        "CRYPTOPULSE_SPARK__CONNECT_PORT": str(connect_port),
    }
    day = T0.date().isoformat()
    produce(local, [x for x in dataset() if x.event_time < T0 + timedelta(minutes=15)])
    try:
        run_backfill(spark, local, T0.date(), T0.date(), source="kafka", client=r)
        stdout = run_cli(["backfill", "--from", day, "--to", day, "--source", "kafka"], env, tmp_path)
        assert f"runs in the Spark application at sc://localhost:{connect_port}" in stdout, stdout
        backfilled = unprefixed(views(r, local, internal=True), local.redis.key_prefix)
        assert any(":trend:ts:1h_5m:" in k for k in backfilled)
        assert unprefixed(views(r, remote, internal=True), remote.redis.key_prefix) == backfilled
        assert lake_rows(spark, remote) == lake_rows(spark, local)
        assert _answers(connect_port)  # the CLI released its session; the application serves on
    finally:
        delete_prefixed_keys(r, remote.redis.key_prefix)


CLIENT = """
import sys
from spark_jobs.session import remote_spark
spark = remote_spark(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
print("rows", spark.range(3).count(), flush=True)
"""


@pytest.mark.timeout(600)
def test_the_endpoint_refuses_a_client_without_its_token(
    connect_server: tuple[int, Path], tmp_path: Path
) -> None:
    """The endpoint runs whatever it is sent: without the token the stream issued (or with
    another one) nothing runs; with it, a query does."""
    port, server_home = connect_server
    token = read_connect_token(load_settings(home=server_home))
    assert token is not None
    env = {k: v for k, v in project_env(tmp_path / "home").items() if not k.startswith("SPARK_CONNECT")}

    def client(*args: str) -> subprocess.CompletedProcess[str]:
        return run_script(CLIENT, f"sc://localhost:{port}", *args, env=env, cwd=tmp_path, timeout=240)

    for refused in (client(), client("not-the-token")):
        assert refused.returncode != 0 and "rows" not in refused.stdout
        assert "UNAUTHENTICATED" in refused.stderr or "authenticat" in refused.stderr.lower(), refused.stderr[
            -2000:
        ]
    allowed = client(token)
    assert allowed.returncode == 0 and "rows 3" in allowed.stdout, allowed.stderr[-2000:]
    # and no process's command line (which every local user can read) carries it
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert token.encode() not in cmdline.read_bytes(), f"the token is on {cmdline}"
        except OSError:  # a process that ended meanwhile
            continue


RACE = """
import socket, sys
from core.settings import load_settings
import spark_jobs.session as session
from spark_jobs.stream import serves_connect
taken = socket.socket()
taken.bind(("127.0.0.1", int(sys.argv[1])))
taken.listen()
session._port_free = lambda host, port: True  # the race: free at the probe, taken at the bind
settings = load_settings()
spark = session.build_spark(settings, kafka=False, connect_server=True)
token = session.read_connect_token(settings)
print("rows", spark.range(4).count(), "serves", serves_connect(spark), "token", token)
spark.stop()
"""


@pytest.mark.timeout(600)
def test_a_port_taken_between_the_probe_and_the_bind_starts_the_stream_without_the_endpoint(
    tmp_path: Path,
) -> None:
    """Two stream jobs starting at once can both find the port free; the loser's Spark
    context fails to bind it. It must start anyway, without the endpoint and its token."""
    port = free_port()
    env = {**project_env(tmp_path / "home"), "CRYPTOPULSE_SPARK__CONNECT_PORT": str(port)}
    done = run_script(RACE, str(port), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rows 4 serves False token None" in done.stdout, done.stdout
    assert "serves no Spark Connect endpoint" in done.stderr
