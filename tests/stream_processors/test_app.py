"""App wiring: configuration from settings, agents/tables/views registered, CLI command."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from core.settings import load_settings
from scoring.holder import ModelHolder
from stream_processors.agents.clean import FLUSH_CLAIMS_EVERY_S
from stream_processors.app import StreamApp, create_app, faust_config, group_id
from stream_processors.liveness import HEARTBEAT_INTERVAL_S
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
    topics = app.parts.topics
    assert topics.raw.topics == ("t-y.raw.reddit", "t-y.raw.news")
    t = topics
    declared = (t.clean, t.scored, t.dead_letter, t.alerts, t.shadow, t.feedback)
    names = [topic.get_topic_name() for topic in declared]
    assert names == [
        "t-y.clean.posts",
        "t-y.scored.posts",
        "t-y.deadletter",
        "t-y.alerts",
        "t-y.scored.shadow",
        "t-y.feedback",
    ]
    assert topics.source_of("t-y.raw.news") == "news" and topics.source_of("t-y.raw.reddit") == "reddit"
    routes = {str(path) for path in app.web.views}
    assert {"/metrics", "/stream/health"} <= routes
    assert (tmp_path / "faust").is_dir()


def test_timers_names_intervals_and_arguments(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every timer runs on every worker at its interval but ``shadow_mlflow`` (one MLflow log
    per interval, from the leader); faust passes the app to a timer function that accepts
    an argument, so ours take none."""
    import inspect

    declared: dict[str, tuple[float, bool]] = {}
    timer = StreamApp.timer

    def recording_timer(self: StreamApp, interval: float, on_leader: bool = False, **kwargs: Any) -> Any:
        declared[kwargs["name"]] = (interval, on_leader)
        return timer(self, interval, on_leader=on_leader, **kwargs)

    monkeypatch.setattr(StreamApp, "timer", recording_timer)
    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "t-t"}, stream={"model_poll_s": 12.5})
    app = create_app(settings, holder=ModelHolder("fake", lambda uri: FakeRuntime()))
    assert declared == {
        "dedup_claims": (FLUSH_CLAIMS_EVERY_S, False),
        "model_poll": (12.5, False),
        "challenger_poll": (12.5, False),
        "shadow_mlflow": (300.0, True),
        "consumer_lag": (5.0, False),
        "data_quality": (10.0, False),
        "model_drift": (30.0, False),
        "heartbeat": (HEARTBEAT_INTERVAL_S, False),
    }
    timers = [inspect.unwrap(task) for task in app._app_tasks]
    assert len(timers) == len(declared)
    assert all(not inspect.signature(fn).parameters for fn in timers)


def test_tables_windows_and_changelogs(tmp_path) -> None:
    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "t-w"}, stream={"dedup_window_s": 600})
    app = create_app(settings, holder=ModelHolder("fake", lambda uri: FakeRuntime()))
    windows = {name: (table.window.size, table.window.expires) for name, table in app.tables.items()}
    assert windows == {
        "dedup": (600, 1200),
        "scored": (600, 1200),
        "counts_1m": (60, 600),
        "counts_5m": (300, 3000),
        "counted": (600, 1200),
    }
    changelogs = {name: table.changelog_topic.get_topic_name() for name, table in app.tables.items()}
    assert changelogs == {name: f"t-w.cryptopulse-stream-{name}-changelog" for name in windows}
    sources = {agent.name: agent.channel.topics for agent in app.agents.values()}
    assert sources == {
        "clean": ("t-w.raw.reddit", "t-w.raw.news"),
        "score": ("t-w.clean.posts",),
        "shadow": ("t-w.scored.posts",),
        "shadow_feedback": ("t-w.feedback",),
        "prices": ("t-w.raw.prices",),
        "count": ("t-w.cryptopulse-stream-counts",),
    }


def test_shadow_scoring_off_declares_no_shadow_agents_or_timers(tmp_path) -> None:
    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "t-s"}, learning={"shadow_enabled": False})
    app = create_app(settings, holder=ModelHolder("fake", lambda uri: FakeRuntime()))
    assert {a.name for a in app.agents.values()} == {"clean", "score", "count", "prices"}
    assert app.parts.shadow.holder.uri == "models:/cryptopulse-sentiment@challenger"


def test_cli_registers_worker_command() -> None:
    from stream_processors import cli as worker

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


def test_clean_shutdown_clears_the_heartbeat_and_closes_redis_and_the_model(tmp_path) -> None:
    """A clean stop leaves the group, so a successor need not wait (see liveness), and the
    scoring runtime (possibly a child process) and the Redis client are released."""
    import asyncio

    from stream_processors.live import LivePublisher
    from stream_processors.liveness import heartbeat_file, touch_heartbeat

    closed: list[str] = []

    class Publisher(LivePublisher):
        async def close(self) -> None:
            closed.append("publisher")

    class Runtime(FakeRuntime):
        def close(self) -> None:
            closed.append("model")

    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "t-s"})
    holder = ModelHolder("fake", lambda uri: Runtime())
    app = create_app(settings, holder=holder, publisher=Publisher("redis://unused", "t-s", enabled=False))

    async def run() -> None:
        await holder.load()
        touch_heartbeat(settings)
        await app.on_before_shutdown.send()

    asyncio.run(run())
    assert not heartbeat_file(settings).exists()
    assert closed == ["publisher", "model"] and not holder.loaded


def test_the_clean_agents_claims_are_flushed_before_each_commit(tmp_path) -> None:
    settings = load_settings(home=tmp_path, kafka={"topic_prefix": "t-c"})
    app = create_app(settings, holder=ModelHolder("fake", lambda uri: FakeRuntime()))
    assert app.before_commit == [app.parts.clean.flush_claims]
