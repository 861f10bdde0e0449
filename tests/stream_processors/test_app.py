"""App wiring: configuration from settings, agents/tables/views registered, CLI command."""

from __future__ import annotations

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
