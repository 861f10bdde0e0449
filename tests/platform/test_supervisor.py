"""supervisord configuration from the Service definitions, and the restart-counting listener."""

from __future__ import annotations

import configparser
import io
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from core.settings import load_settings
from cryptopulse.platform.events import RestartCounter, listen, serve_metrics
from cryptopulse.platform.ownership import OWNER_ENV
from cryptopulse.platform.pipeline import SparkStreamingService, StreamWorkerService
from cryptopulse.platform.services import (
    DOCKER_HOSTS,
    RedisService,
    ServiceError,
    scrape_targets,
)
from cryptopulse.platform.supervisor import Supervisor
from tests.ports import free_port

pytestmark = pytest.mark.unit


def _parse(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    parser.read_string(text)
    return parser


def test_program_restarts_on_failure_gives_up_and_stops_the_whole_tree(tmp_path: Path):
    settings = load_settings(home=tmp_path, log_rotate_mb=7, supervisor={"start_retries": 4})
    supervisor = Supervisor(settings)
    redis = RedisService(settings)
    program = _parse(supervisor.program_config(redis, {"CRYPTOPULSE_API__PORT": "8123"}, tmp_path))[
        "program:redis"
    ]
    assert program["autorestart"] == "unexpected" and program["exitcodes"] == "0"
    assert program["startretries"] == "4" and program["startsecs"] == str(redis.start_secs)
    assert program["stopasgroup"] == "true" and program["killasgroup"] == "true"
    assert program["stopwaitsecs"] == "30" and program["autostart"] == "false"
    assert program["stdout_logfile"] == str(settings.log_dir / "redis.log")
    assert program["stdout_logfile_maxbytes"] == "7MB" and program["stdout_logfile_backups"] == "1"
    assert program["redirect_stderr"] == "true" and program["directory"] == str(tmp_path)
    assert f'{OWNER_ENV}="{tmp_path}::redis"' in program["environment"]
    assert 'CRYPTOPULSE_API__PORT="8123"' in program["environment"]
    # supervisord splits the command like a POSIX shell: the empty `--save ""` survives.
    assert "--save ''" in program["command"]


def test_leader_first_services_are_not_signalled_as_a_group(tmp_path: Path):
    settings = load_settings(home=tmp_path)
    supervisor = Supervisor(settings)
    for service in (StreamWorkerService(settings), SparkStreamingService(settings)):
        program = _parse(supervisor.program_config(service, {}, tmp_path))[f"program:{service.name}"]
        assert program["stopasgroup"] == "false" and program["killasgroup"] == "true"


def test_values_are_escaped_or_refused(tmp_path: Path):
    settings = load_settings(home=tmp_path)
    supervisor = Supervisor(settings)
    redis = RedisService(settings)
    text = supervisor.program_config(
        redis, {"CRYPTOPULSE_A": "50%", "CRYPTOPULSE_B": 'say "hi" now'}, tmp_path
    )
    assert 'CRYPTOPULSE_A="50%%"' in text  # supervisord expands %(name)s
    assert "CRYPTOPULSE_B='say \"hi\" now'" in text
    for bad in ("two\nlines", "both ' and \"", "'quoted'", 'ends"'):
        with pytest.raises(ServiceError, match="CRYPTOPULSE_C"):
            supervisor.program_config(redis, {"CRYPTOPULSE_C": bad}, tmp_path)
    with pytest.raises(ServiceError, match="cannot be written"):
        supervisor.program_config(redis, {"CRYPTOPULSE_C": "a ;comment"}, tmp_path)


def test_main_config_has_socket_include_and_listener(tmp_path: Path):
    settings = load_settings(home=tmp_path, supervisor={"metrics_port": 9555})
    config = _parse(Supervisor(settings).main_config())
    assert config["unix_http_server"]["file"] == str(tmp_path / "run" / "supervisor.sock")
    assert config["unix_http_server"]["chmod"] == "0700"
    assert config["include"]["files"] == str(tmp_path / "run" / "programs" / "*.conf")
    listener = config["eventlistener:cryptopulse-events"]
    assert listener["events"] == "PROCESS_STATE" and "--port 9555" in listener["command"]
    assert f"{tmp_path}::cryptopulse-events" in listener["environment"]


def test_restart_counts_are_scraped_locally_only():
    settings = load_settings(supervisor={"metrics_port": 9555})
    assert scrape_targets(settings)["supervisor"] == "127.0.0.1:9555"
    assert "supervisor" not in scrape_targets(settings, DOCKER_HOSTS)


def _event(name: str, payload: str) -> bytes:
    body = payload.encode()
    return (
        f"ver:3.0 server:supervisor serial:1 pool:l poolserial:1 eventname:{name} len:{len(body)}\n".encode()
        + body
    )


def test_listener_counts_only_the_restarts_supervisord_made(tmp_path: Path):
    state = tmp_path / "restarts.json"
    registry = CollectorRegistry()
    counter = RestartCounter(state, registry, ignore="cryptopulse-events", supervisord_pid=42)
    events = [
        ("PROCESS_STATE_STARTING", "processname:kafka groupname:kafka from_state:STOPPED tries:0"),  # `up`
        ("PROCESS_STATE_RUNNING", "processname:kafka groupname:kafka from_state:STARTING pid:10"),
        ("PROCESS_STATE_EXITED", "processname:kafka groupname:kafka from_state:RUNNING expected:0 pid:10"),
        ("PROCESS_STATE_STARTING", "processname:kafka groupname:kafka from_state:EXITED tries:0"),  # crash
        ("PROCESS_STATE_BACKOFF", "processname:kafka groupname:kafka from_state:STARTING tries:1"),
        ("PROCESS_STATE_STARTING", "processname:kafka groupname:kafka from_state:BACKOFF tries:1"),  # retry
        ("PROCESS_STATE_EXITED", "processname:api groupname:api from_state:RUNNING expected:1 pid:11"),
        ("PROCESS_STATE_STARTING", "processname:api groupname:api from_state:EXITED tries:0"),  # `up` again
        ("PROCESS_STATE_FATAL", "processname:kafka groupname:kafka from_state:BACKOFF"),
        ("PROCESS_STATE_STARTING", "processname:cryptopulse-events groupname:x from_state:BACKOFF tries:1"),
        ("PROCESS_STATE_STARTING", "garbage without fields"),
    ]
    stdin = io.BytesIO(b"".join(_event(name, payload) for name, payload in events) + b"ver:3.0 len:x\n")
    stdout = io.BytesIO()
    with pytest.raises(ValueError):  # an unreadable header ends the listener; supervisord restarts it
        listen(counter, stdin, stdout)
    assert stdout.getvalue() == b"READY\n" + b"RESULT 2\nOKREADY\n" * len(events)
    assert json.loads(state.read_text()) == {"supervisord_pid": 42, "restarts": {"kafka": 2}}
    metrics = generate_latest(registry).decode()
    assert 'cryptopulse_service_restarts_total{service="kafka"} 2.0' in metrics
    assert 'cryptopulse_service_restarts_total{service="api"} 0.0' in metrics
    assert 'cryptopulse_service_gave_up{service="kafka"} 1.0' in metrics
    # supervisord restarts the listener: it carries on; a new supervisord starts from zero.
    again = CollectorRegistry()
    RestartCounter(state, again, supervisord_pid=42)
    assert 'cryptopulse_service_restarts_total{service="kafka"} 2.0' in generate_latest(again).decode()
    RestartCounter(state, CollectorRegistry(), supervisord_pid=43)
    assert json.loads(state.read_text())["restarts"] == {}


def test_listener_serves_metrics_once_its_port_is_free():
    registry = CollectorRegistry()
    port = free_port()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    threading.Thread(target=serve_metrics, args=("127.0.0.1", port, registry, 0.1), daemon=True).start()
    time.sleep(0.3)
    squatter.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("metrics never served")


def test_listener_returns_when_supervisord_goes(tmp_path: Path):
    counter = RestartCounter(tmp_path / "restarts.json", CollectorRegistry())
    stdout = io.BytesIO()
    listen(counter, io.BytesIO(b""), stdout)
    assert stdout.getvalue() == b"READY\n"
