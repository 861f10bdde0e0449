"""App wiring: configuration from settings, agents/tables/views registered, CLI command."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cryptopulse.settings import load_settings
from stream_processors.app import create_app, faust_config, group_id
from stream_processors.scorer import ModelHolder
from tests.stream_processors.fakes import FakeRuntime

pytestmark = pytest.mark.unit


def test_config_from_settings(tmp_path) -> None:
    settings = load_settings(
        home=tmp_path,
        kafka={"topic_prefix": "t-x", "bootstrap_servers": "h1:1,h2:2"},
        stream={"web_port": 7001},
    )
    config = faust_config(settings)
    assert config["broker"] == ["kafka://h1:1", "kafka://h2:2"]
    assert config["datadir"] == str(tmp_path / "faust")
    assert config["web_port"] == 7001
    assert config["processing_guarantee"] == "at_least_once"
    assert config["consumer_auto_offset_reset"] == "earliest"
    assert group_id(settings) == "t-x.cryptopulse-stream"


def test_app_registers_agents_tables_and_views(tmp_path) -> None:
    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "t-y"})
    app = create_app(settings, holder=ModelHolder("fake", lambda uri: FakeRuntime()))
    assert {a.name for a in app.agents.values()} >= {"clean", "score"}
    assert set(app.tables) >= {"dedup", "scored", "counts_1m", "counts_5m"}
    pipeline = app.pipeline  # type: ignore[attr-defined]
    assert pipeline.raw_topic.topics == ("t-y.raw.reddit", "t-y.raw.news")
    assert pipeline.scored_topic.get_topic_name() == "t-y.scored.posts"
    routes = {str(path) for path in app.web.views}
    assert {"/metrics", "/stream/health"} <= routes
    assert (tmp_path / "faust").is_dir()


def test_timers_take_no_arguments(tmp_path) -> None:
    """faust passes the app to a timer function that accepts an argument: ours must take none."""
    import inspect

    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "t-t"})
    app = create_app(settings, holder=ModelHolder("fake", lambda uri: FakeRuntime()))
    timers = [inspect.unwrap(task) for task in app._app_tasks]
    names = {fn.__name__ for fn in timers}
    assert {"poll_model", "update_lag", "quality_timer"} <= names
    assert all(not inspect.signature(fn).parameters for fn in timers), names


def test_cli_registers_worker_command() -> None:
    from cryptopulse.cli import worker

    cli = typer.Typer()
    worker.register(cli)

    @cli.command()
    def other() -> None:  # typer needs 2+ commands to keep subcommand names
        pass

    result = CliRunner().invoke(cli, ["worker", "--help"])
    assert result.exit_code == 0, result.output
    assert "--web-port" in result.output


def test_worker_consumer_batches_fetches(tmp_path) -> None:
    """faust hard-codes the fetch settings; the app's transport applies ``stream.fetch_*``."""
    import asyncio

    stream = {"fetch_min_bytes": 4096, "fetch_max_wait_ms": 35}
    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "t-f"}, stream=stream)
    app = create_app(settings, holder=ModelHolder("fake", lambda uri: FakeRuntime()))

    async def ignore(message: Any) -> None:
        return None

    async def build() -> Any:  # aiokafka consumers are created inside a running loop
        consumer = app.transport.create_consumer(
            callback=ignore,
            on_partitions_revoked=lambda revoked: None,
            on_partitions_assigned=lambda assigned: None,
        )
        thread = consumer._new_consumer_thread()  # type: ignore[attr-defined]
        return thread._create_worker_consumer(app.transport)

    kafka_consumer = asyncio.run(build())
    assert kafka_consumer._fetch_min_bytes == 4096
    assert kafka_consumer._fetch_max_wait_ms == 35
