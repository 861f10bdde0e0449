"""Where a backfill runs: the streaming job's warm application (Spark Connect) or its own session."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import spark_jobs.session as session
from core.settings import Settings, SettingsError, load_settings
from spark_jobs.session import (
    CONNECT_PLUGIN,
    SparkUnavailable,
    backfill_spark,
    connect_server_conf,
    connect_token_file,
    connect_url,
    new_connect_token,
    publish_connect_token,
    read_connect_token,
    withdraw_connect_token,
)
from tests.ports import free_port

pytestmark = pytest.mark.unit


@pytest.fixture
def listener() -> Iterator[int]:
    """A port something listens on (as the stream job's endpoint would)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's settings live in its own home: the token file must never touch a real one."""
    monkeypatch.setenv("CRYPTOPULSE_HOME", str(tmp_path / "home"))


def settings_with(port: int, remote: str = "auto") -> Settings:
    return load_settings(spark={"connect_port": port, "backfill_remote": remote})


def stream_serving(settings: Settings) -> str:
    """What a streaming job serving the endpoint leaves behind: its token file."""
    token = new_connect_token()
    publish_connect_token(settings, token)
    return token


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records which kind of session ``backfill_spark`` built, without starting Spark."""
    built: list[str] = []

    def own(settings: Settings, **kw: Any) -> Any:
        built.append(f"own:{kw.get('master')}")
        return SimpleNamespace(sparkContext=SimpleNamespace(master=kw.get("master") or "local[2]"))

    def remote(url: str, token: str | None = None) -> Any:
        built.append(f"remote:{url}" + (f" token:{token}" if token else ""))
        return SimpleNamespace()

    monkeypatch.setattr(session, "build_spark", own)
    monkeypatch.setattr(session, "remote_spark", remote)
    return built


def test_the_stream_serves_spark_connect_only_on_a_free_port(listener: int) -> None:
    port = free_port()
    settings = settings_with(port)
    assert connect_server_conf(settings) == {
        "spark.plugins": CONNECT_PLUGIN,
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
    }  # no token here: a --conf would put it on the JVM's command line (build_spark: environment)
    assert connect_server_conf(settings_with(listener)) == {}  # taken: the stream starts without it
    assert connect_server_conf(settings_with(0)) == {}  # switched off


def test_the_token_file_is_its_owners_and_a_stop_withdraws_only_its_own() -> None:
    settings = settings_with(free_port())
    first = stream_serving(settings)
    assert len(first) >= 40 and connect_token_file(settings).stat().st_mode & 0o777 == 0o600
    second = stream_serving(settings)  # the supervisor restarted the stream
    assert first != second and read_connect_token(settings) == second
    withdraw_connect_token(settings, first)  # the old process ending late leaves the new token
    assert read_connect_token(settings) == second
    withdraw_connect_token(settings, second)
    assert read_connect_token(settings) is None and not connect_token_file(settings).exists()


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "sc://localhost:15002"),
        ("0.0.0.0", "sc://localhost:15002"),  # nosec B104  # a setting's value, nothing binds
        ("127.0.0.2", "sc://127.0.0.2:15002"),  # not what "localhost" resolves to
        ("10.0.0.5", "sc://10.0.0.5:15002"),
    ],
)
def test_the_endpoint_url_names_loopback_localhost(host: str, url: str) -> None:
    assert connect_url(load_settings(spark={"connect_host": host, "connect_port": 15002})) == url


def test_auto_does_not_send_the_token_off_loopback(sessions: list[str], listener: int) -> None:
    """PySpark wants TLS to send a token to any host but localhost; a plain endpoint would
    answer with minutes of retries, so auto starts a session of its own at once."""
    settings = load_settings(spark={"connect_port": listener, "connect_host": "127.0.0.2"})
    stream_serving(settings)
    _, where = backfill_spark(settings)
    assert sessions == ["own:None"] and "new Spark session" in where


def test_auto_uses_the_streams_endpoint_with_its_token(sessions: list[str], listener: int) -> None:
    settings = settings_with(listener)
    token = stream_serving(settings)
    _, where = backfill_spark(settings)
    # localhost, not 127.0.0.1: PySpark sends a token over plain gRPC to that name only
    assert sessions == [f"remote:sc://localhost:{listener} token:{token}"] and "Spark Connect" in where


def test_auto_does_not_try_a_port_without_the_streams_token(sessions: list[str], listener: int) -> None:
    """Something else on the port (no stream wrote a token) is not sent a backfill: a
    non-Spark listener would keep the Connect client retrying for minutes."""
    _, where = backfill_spark(settings_with(listener))
    assert sessions == ["own:None"] and "new Spark session" in where


def test_auto_starts_its_own_session_when_nothing_answers(sessions: list[str]) -> None:
    settings = settings_with(free_port())
    stream_serving(settings)  # a token left by a stream that died without withdrawing it
    _, where = backfill_spark(settings)
    assert sessions == ["own:None"] and where == "a new Spark session (local[2])"
    backfill_spark(settings_with(0))
    assert sessions[-1] == "own:None"


def test_local_and_an_explicit_master_never_use_the_endpoint(sessions: list[str], listener: int) -> None:
    stream_serving(settings_with(listener))
    backfill_spark(settings_with(listener, "local"))
    backfill_spark(settings_with(listener), master="spark://cluster:7077")
    assert sessions == ["own:None", "own:spark://cluster:7077"]


def test_an_explicit_endpoint_must_answer(sessions: list[str], listener: int) -> None:
    backfill_spark(settings_with(0, f"sc://127.0.0.1:{listener}"))
    assert sessions == [f"remote:sc://127.0.0.1:{listener}"]
    with pytest.raises(SparkUnavailable, match="nothing answers"):
        backfill_spark(settings_with(0, f"sc://127.0.0.1:{free_port()}"))


def test_an_unusable_endpoint_falls_back_to_a_classic_session(
    sessions: list[str], listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(url: str, token: str | None = None) -> Any:
        os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"  # what PySpark's remote builder leaves behind
        raise RuntimeError("not a Spark Connect server")

    monkeypatch.setattr(session, "remote_spark", broken)
    monkeypatch.delenv("SPARK_CONNECT_MODE_ENABLED", raising=False)
    stream_serving(settings_with(listener))
    _, where = backfill_spark(settings_with(listener))
    assert sessions == ["own:None"] and "new Spark session" in where
    assert "SPARK_CONNECT_MODE_ENABLED" not in os.environ
    with pytest.raises(SparkUnavailable, match="not a Spark Connect server"):
        backfill_spark(settings_with(0, f"sc://127.0.0.1:{listener}"))
    assert "SPARK_CONNECT_MODE_ENABLED" not in os.environ  # the rest of this process stays classic


@pytest.mark.parametrize("value", ["remote", "sc://", "http://host:15002", ""])
def test_backfill_remote_is_auto_local_or_an_sc_url(value: str) -> None:
    with pytest.raises(SettingsError, match="BACKFILL_REMOTE"):
        settings_with(15002, value)


def test_the_stream_warms_up_for_backfills_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    import spark_jobs.backfill as backfill
    import spark_jobs.stream as stream

    calls: list[int] = []
    monkeypatch.setattr(stream, "WARM_UP_DELAY_S", 0.0)

    def record(spark: Any, scratch: Any, events: int) -> float:
        calls.append(events)
        return 1.0

    monkeypatch.setattr(backfill, "warm_up", record)
    plugins = {"spark.plugins": CONNECT_PLUGIN}
    fake = SimpleNamespace(conf=SimpleNamespace(get=lambda key, default="": plugins.get(key, default)))
    assert stream.serves_connect(fake)  # type: ignore[arg-type]
    stream.warm_up_for_backfills(fake, settings_with(free_port()), threading.Event())  # type: ignore[arg-type]
    assert calls == [200_000, 200_000]  # spark.backfill_warm_up_runs
    stopped = threading.Event()
    stopped.set()
    stream.warm_up_for_backfills(fake, settings_with(free_port()), stopped)  # type: ignore[arg-type]
    assert calls == [200_000, 200_000]  # stopping before the delay ends: no warm-up

    def failing(spark: Any, scratch: Any, events: int) -> float:
        raise RuntimeError("the application stopped")

    monkeypatch.setattr(backfill, "warm_up", failing)
    caplog.clear()  # the successful warm-up above logged "done"
    with caplog.at_level("WARNING", logger="spark_jobs.stream"):
        stream.warm_up_for_backfills(fake, settings_with(free_port()), threading.Event())  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == ["backfill warm-up failed"]
    plugins.clear()
    assert not stream.serves_connect(fake)  # type: ignore[arg-type]


def test_a_connect_session_never_joins_a_process_running_a_classic_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Connect mode flag would switch the running classic session's functions to Connect
    columns; ``remote_spark`` refuses (auto then falls back to that session)."""
    from pyspark import SparkContext

    monkeypatch.setattr(SparkContext, "_active_spark_context", object())
    monkeypatch.delenv("SPARK_CONNECT_MODE_ENABLED", raising=False)
    with pytest.raises(RuntimeError, match="classic Spark session"):
        session.remote_spark("sc://localhost:15002", "token")
    assert "SPARK_CONNECT_MODE_ENABLED" not in os.environ
