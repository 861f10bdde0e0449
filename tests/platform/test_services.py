"""The platform's services answer, and the process manager behaves."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from cryptopulse.platform.manager import Platform
from cryptopulse.platform.process import PortInUseError, ProcessTable
from cryptopulse.platform.services import RedisService
from cryptopulse.settings import Settings, load_settings
from tests.ports import free_port


@pytest.mark.integration
def test_redis_roundtrip_and_aof(platform: Settings):
    client = redis.Redis.from_url(platform.redis.dsn)
    key = "test:roundtrip"
    client.set(key, "bitcoin", ex=30)
    assert client.get(key) == b"bitcoin"
    assert client.config_get("appendonly")["appendonly"] == "yes"


@pytest.mark.integration
def test_mlflow_reachable(platform: Settings):
    assert httpx.get(f"{platform.mlflow.uri}/health", timeout=5).status_code == 200
    response = httpx.get(
        f"{platform.mlflow.uri}/api/2.0/mlflow/experiments/search", params={"max_results": 5}, timeout=10
    )
    assert response.status_code == 200


@pytest.fixture
def private_settings(tmp_path) -> Settings:
    return load_settings(home=tmp_path / "home", redis={"port": free_port()})


@pytest.mark.integration
def test_up_is_idempotent_and_down_stops_by_pid(private_settings: Settings):
    manager = Platform(private_settings, services=[RedisService])
    manager.up()
    record = manager.table.get("redis")
    assert record is not None and psutil.pid_exists(record.pid)
    manager.up()  # second up: same process
    assert manager.table.get("redis").pid == record.pid  # type: ignore[union-attr]
    status = manager.status()[0]
    assert status.up and status.managed and status.version.startswith("7.")
    assert manager.down() == ["redis"]
    assert not psutil.pid_exists(record.pid) or psutil.Process(record.pid).status() == psutil.STATUS_ZOMBIE
    assert manager.down() == []


@pytest.mark.integration
def test_stale_pid_file_recovered(private_settings: Settings):
    table = ProcessTable(private_settings.run_dir)
    private_settings.run_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (private_settings.run_dir / "redis.json").write_text(
        json.dumps({"name": "redis", "pid": dead.pid, "create_time": 1.0, "argv": [], "log_path": "x"})
    )
    assert table.get("redis") is None
    assert not (private_settings.run_dir / "redis.json").exists()
    manager = Platform(private_settings, services=[RedisService])
    manager.up()
    try:
        assert manager.status()[0].up
    finally:
        manager.down()


@pytest.mark.integration
def test_foreign_port_holder_reported(private_settings: Settings):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", private_settings.redis.port))
        squatter.listen()
        manager = Platform(private_settings, services=[RedisService])
        with pytest.raises(PortInUseError, match=rf"port {private_settings.redis.port} is held by pid \d+"):
            manager.up()
        assert manager.table.get("redis") is None


@pytest.mark.integration
def test_status_cli_exits_nonzero_when_down(private_settings: Settings, tmp_path):
    env = {
        **{k: v for k, v in __import__("os").environ.items() if not k.startswith("CRYPTOPULSE_")},
        "CRYPTOPULSE_HOME": str(private_settings.home),
        "CRYPTOPULSE_REDIS__PORT": str(private_settings.redis.port),
        "CRYPTOPULSE_KAFKA__PORT": str(free_port()),
        "CRYPTOPULSE_MLFLOW__PORT": str(free_port()),
        "CRYPTOPULSE_PROMETHEUS__PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "cryptopulse", "status"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1
    assert "down" in result.stdout


def _processes_under(path: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(path in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.mark.integration
def test_down_leaves_no_process_behind(tmp_path):
    """MLflow (uvicorn workers) and Prometheus spawn children; down must reap them all."""
    from cryptopulse.platform.services import MlflowService, PrometheusService

    settings = load_settings(
        home=tmp_path / "home", mlflow={"port": free_port()}, prometheus={"port": free_port()}
    )
    manager = Platform(settings, services=[MlflowService, PrometheusService])
    manager.up()
    assert all(s.up for s in manager.status())
    assert _processes_under(str(settings.home))
    assert sorted(manager.down()) == ["mlflow", "prometheus"]
    assert [p.pid for p in _processes_under(str(settings.home)) if p.status() != psutil.STATUS_ZOMBIE] == []


def test_stop_signals_the_leader_before_its_children(tmp_path):
    """A leader that stops its own child on SIGTERM finishes that before the group is
    signalled (the Spark driver must stop its queries before its JVM goes)."""
    order = tmp_path / "order.txt"
    script = Path(__file__).with_name("scripts") / "graceful_leader.py"
    table = ProcessTable(tmp_path / "run")
    argv = [sys.executable, str(script), str(order)]
    record = table.start("leader", argv, log_path=tmp_path / "leader.log")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not psutil.Process(record.pid).children():
        time.sleep(0.1)
    time.sleep(0.5)  # the child installs its handler
    assert table.stop("leader", timeout_s=20)
    assert order.read_text().splitlines() == [
        "leader got SIGTERM",
        "leader stopping child",
        "child got SIGTERM",
    ]


@pytest.mark.integration
def test_concurrent_ups_start_one_process(private_settings: Settings):
    """Two `up` runs at once (two shells, two test sessions) share one service."""
    import threading

    managers = [Platform(private_settings, services=[RedisService]) for _ in range(2)]
    errors: list[BaseException] = []

    def run(manager: Platform) -> None:
        try:
            manager.up()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in managers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        record = managers[0].table.get("redis")
        assert record is not None and managers[1].table.get("redis") == record
        assert managers[0].status()[0].managed
    finally:
        assert managers[0].down() == ["redis"]


def test_service_log_is_rotated_at_start_once_too_big(tmp_path):
    """A log over the limit moves to NAME.log.1 (replacing the older copy); a small one is kept."""
    log_path = tmp_path / "svc.log"
    log_path.write_bytes(b"x" * 2048)
    (tmp_path / "svc.log.1").write_bytes(b"older")
    table = ProcessTable(tmp_path / "run", rotate_log_bytes=1024)
    argv = [sys.executable, "-c", "print('second start')"]
    table.start("svc", argv, log_path=log_path)
    assert (tmp_path / "svc.log.1").read_bytes() == b"x" * 2048
    deadline = time.monotonic() + 10
    while "second start" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "starting svc" in log_path.read_text() and "second start" in log_path.read_text()
    table.start("svc", argv, log_path=log_path)  # small now: appended, not rotated
    assert (tmp_path / "svc.log.1").read_bytes() == b"x" * 2048
    assert log_path.read_text().count("starting svc") == 2
