"""Shared pieces: state files, HTTP retry rules, shutdown during backoff, CLI wiring."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from core.settings import Settings
from producers.cli import register
from producers.http import Fetcher, FetchError, _seconds
from producers.runner import SOURCES, Runner, build_source
from producers.state import StateStore
from tests.producers.conftest import RecordingProducer, make_settings
from tests.producers.fakeserver import FakeServer, Reply


def test_state_store_roundtrip_atomic_and_corrupt_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "producers" / "x.json")
    assert store.load() == {}
    store.save({"cursor": 5, "seen": ["a"]})
    assert store.load() == {"cursor": 5, "seen": ["a"]}
    assert [p.name for p in store.path.parent.iterdir()] == ["x.json"]  # no temp files left
    store.path.write_text('{"cursor": 5, "se')  # torn by something else
    assert store.load() == {}
    assert store.path.with_suffix(".corrupt").exists()


def test_delay_header_parsing() -> None:
    assert _seconds("3") == 3.0
    assert _seconds("0.5") == 0.5
    assert _seconds(None) is None and _seconds("soon") is None
    assert _seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


def test_4xx_fails_fast_without_retry(unit_settings: Settings, server: FakeServer) -> None:
    server.set("/x", Reply(404, b"nope"))
    fetcher = Fetcher(unit_settings, "test")
    with pytest.raises(FetchError) as info:
        fetcher.get_json(server.url + "/x", endpoint="x")
    assert info.value.reason == "http_4xx" and info.value.status == 404
    assert len(server.hits("/x")) == 1


def test_stop_during_long_backoff_exits_promptly(tmp_path: Path, server: FakeServer) -> None:
    settings = make_settings(tmp_path, server, backoff_max_s=300)
    server.set("/api/v3/coins/markets", Reply(429, b"{}", {"Retry-After": "120"}))
    stop = threading.Event()
    source = build_source("prices", settings, stop=stop)
    producer = RecordingProducer(settings)
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    Runner(settings, source, producer=producer, stop=stop).run()
    assert time.monotonic() - started < 3  # the 120 s Retry-After wait was interrupted
    assert len(server.hits("/api/v3/coins/markets")) == 1


def test_build_source_names(unit_settings: Settings) -> None:
    assert SOURCES == ("reddit", "news", "prices", "replay")
    for name in SOURCES:
        source = build_source(name, unit_settings)
        assert source.name == name
        source.close()
    with pytest.raises(ValueError):
        build_source("twitter", unit_settings)


def test_cli_register_and_help() -> None:
    root = typer.Typer()

    @root.callback()
    def main() -> None:
        """root"""

    register(root)
    runner = CliRunner()
    result = runner.invoke(root, ["produce", "--help"])
    assert result.exit_code == 0
    for name in SOURCES:
        assert name in result.output
    result = runner.invoke(root, ["produce", "replay", "--help"])
    assert result.exit_code == 0 and "--limit" in result.output
    result = runner.invoke(root, ["produce", "reddit", "--help"])
    assert result.exit_code == 0 and "--cycles" in result.output


def test_metrics_count_produced_failures_latency_and_last_success(
    unit_settings: Settings, server: FakeServer
) -> None:
    from prometheus_client import REGISTRY

    from tests.producers import payloads as p

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    topic = f"{unit_settings.kafka.topic_prefix}.raw.prices"
    before = {
        "produced": value("cryptopulse_producer_records_produced_total", source="prices", topic=topic),
        "5xx": value("cryptopulse_producer_failures_total", source="prices", reason="http_5xx"),
        "latency": value(
            "cryptopulse_producer_fetch_seconds_count", source="prices", endpoint="coins_markets"
        ),
    }
    server.set(
        "/api/v3/coins/markets", Reply(503, b"busy"), Reply(200, p.markets({"bitcoin": 1.0, "ethereum": 2.0}))
    )
    started = time.time()
    Runner(
        unit_settings, build_source("prices", unit_settings), producer=RecordingProducer(unit_settings)
    ).run(cycles=1)
    assert (
        value("cryptopulse_producer_records_produced_total", source="prices", topic=topic)
        == before["produced"] + 2
    )
    assert (
        value("cryptopulse_producer_failures_total", source="prices", reason="http_5xx") == before["5xx"] + 1
    )
    latency = value("cryptopulse_producer_fetch_seconds_count", source="prices", endpoint="coins_markets")
    assert latency == before["latency"] + 2
    assert value("cryptopulse_producer_last_success_timestamp_seconds", source="prices") >= started
