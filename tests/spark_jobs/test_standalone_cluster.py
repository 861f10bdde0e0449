"""The trend jobs on a Spark standalone cluster equal local[2]: only ``spark.master`` changes.

A master and one worker (1 core, 1 GB) are started from the pyspark pip distribution
(``bin/spark-class``); the backfill (the Kafka source, the window aggregations and the
re-scoring through the pandas UDF, which runs the project's Python on the executor) is run
as the real CLI with ``CRYPTOPULSE_SPARK__MASTER=spark://...`` and nothing else changed, on
the same topics as an in-process local[2] run, and must leave the same Redis views and lake.
The streaming job builds its session the same way (``spark_jobs.session.build_spark``) and
runs the same source and aggregations; a second cluster application for it cost the suite
a minute and a half without covering another code path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings, load_settings
from spark_jobs.backfill import run_backfill
from tests.ports import free_port
from tests.spark_jobs.conftest import T0, produce
from tests.spark_jobs.test_backfill import dataset, lake_rows, views

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_S = 900


@dataclass
class StandaloneCluster:
    """One master and one worker JVM, each in its own process group (ours to stop)."""

    url: str
    web_port: int
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/json/", timeout=5) as resp:
            return dict(json.loads(resp.read()))

    def app_names(self) -> list[str]:
        state = self.state()
        return [app["name"] for app in state.get("activeapps", []) + state.get("completedapps", [])]

    def tail(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in sorted(self.logs.glob("*.log"))
        )

    def stop(self) -> None:
        """SIGTERM the worker (it kills its executors) then the master; SIGKILL if they hang."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(30)


def _spark_class() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    root = tmp_path_factory.mktemp("standalone")
    port, web = free_port(), free_port()
    env = {
        **os.environ,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "256m",  # the master and worker daemons themselves
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",  # no REST port 6066 to collide on
        "SPARK_LOCAL_DIRS": str(root / "local"),
        "SPARK_WORKER_DIR": str(root / "work"),
    }
    found = StandaloneCluster(url=f"spark://127.0.0.1:{port}", web_port=web, logs=root)
    daemons = [
        ("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port)]),
        (
            "worker",
            [
                "org.apache.spark.deploy.worker.Worker",
                found.url,
                "--host",
                "127.0.0.1",
                "--cores",
                "1",
                "--memory",
                "1g",
                "--work-dir",
                str(root / "work"),
                "--webui-port",
                str(free_port()),
            ],
        ),
    ]
    try:
        for name, argv in daemons:
            if name == "master":
                argv = [*argv, "--webui-port", str(web)]
            with (root / f"{name}.log").open("ab") as log:
                found.procs.append(
                    subprocess.Popen(  # nosec B603  # the pyspark distribution's own launcher, fixed argv
                        [str(_spark_class()), *argv],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in found.procs):
                pytest.fail(f"a standalone daemon exited:\n{found.tail()}")
            try:
                workers = found.state().get("workers", [])
            except OSError:
                workers = []
            if any(w.get("state") == "ALIVE" and w.get("cores") == 1 for w in workers):
                break
            time.sleep(1)
        else:
            pytest.fail(f"no worker registered with the master in 180 s:\n{found.tail()}")
        yield found
    finally:
        found.stop()


def cluster_env(settings: Settings, master: str) -> dict[str, str]:
    """The CLI's environment: the test's topics, keys and folders, and the one setting that
    differs from a local run, ``CRYPTOPULSE_SPARK__MASTER``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOPULSE_")}
    env.update(
        {
            "CRYPTOPULSE_HOME": str(settings.home),
            "CRYPTOPULSE_CACHE_DIR": str(settings.cache_dir),
            "CRYPTOPULSE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap,
            "CRYPTOPULSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "CRYPTOPULSE_REDIS__URL": settings.redis.dsn,
            "CRYPTOPULSE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
            "CRYPTOPULSE_MLFLOW__TRACKING_URI": settings.mlflow.uri,
            "CRYPTOPULSE_SPARK__MASTER": master,
            # Not a stream job's warm application (``auto``), even if the platform runs one.
            "CRYPTOPULSE_SPARK__BACKFILL_REMOTE": "local",
            "PYTHONPATH": str(REPO),
            "SPARK_LOCAL_IP": "127.0.0.1",  # the executors call the driver back on loopback
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


def twin_settings(local: Settings, home: Path, tag: str) -> Settings:
    """``local``'s topics and cache with a home and Redis prefix of their own: the same
    backfill run elsewhere writes beside the local one, for a key-by-key comparison."""
    return load_settings(
        home=home,
        cache_dir=local.cache_dir,
        kafka=local.kafka.model_dump(),
        redis={**local.redis.model_dump(), "key_prefix": f"{local.redis.key_prefix}-{tag}"},
        spark=local.spark.model_dump(),
    )


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """``python -m spark_jobs ...`` from a folder outside the repository (executors get no
    help from the driver's working directory); returns its standard output."""
    done = subprocess.run(  # nosec B603  # this interpreter, the project's own CLI
        [sys.executable, "-m", "spark_jobs", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
        check=False,
    )
    output = f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{output}"
    return done.stdout


def unprefixed(found: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {key.removeprefix(prefix): value for key, value in found.items()}


@pytest.mark.timeout(1800)  # a local run and a cluster application on a shared 2-core box
def test_standalone_cluster_matches_local(
    spark: Any,
    spark_settings: Settings,
    redis_client: Any,
    cluster: StandaloneCluster,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    from views import delete_prefixed_keys

    local, r = spark_settings, redis_client
    remote = twin_settings(local, tmp_path / "cluster-home", "cluster")
    env = cluster_env(remote, cluster.url)
    day = T0.date().isoformat()
    model = str(tiny_model_dir)
    # The backfill test's data, first 15 minutes: three coins, two sources, prices, overlaps.
    produce(local, [x for x in dataset() if x.event_time < T0 + timedelta(minutes=15)])
    try:
        # The backfill: the Kafka source and the window aggregations run on the executor, and
        # so does re-scoring every text through the pandas UDF (the project's Python there).
        run_backfill(spark, local, T0.date(), T0.date(), source="kafka", model=model, client=r)
        backfill = ["backfill", "--from", day, "--to", day, "--source", "kafka", "--model", model]
        run_cli(backfill, env, tmp_path)
        backfilled = unprefixed(views(r, local, internal=True), local.redis.key_prefix)
        assert any(":trend:ts:1h_5m:" in k for k in backfilled)
        assert unprefixed(views(r, remote, internal=True), remote.redis.key_prefix) == backfilled
        assert lake_rows(spark, remote) == lake_rows(spark, local)

        # It really ran on the cluster, not in a local JVM.
        names = cluster.app_names()
        assert f"{remote.spark.app_name}-backfill" in names, names
    finally:
        delete_prefixed_keys(r, remote.redis.key_prefix)
