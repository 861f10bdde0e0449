"""Registry flow against the real MLflow, Redis and Kafka: register, the gate and its reasons,
rollback, model events, auto-promotion. Each test owns a unique registered model name."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

import model_export.cli as cli
from core.kafka import EventProducer
from core.settings import Settings, load_settings
from model_export import registry
from model_export.train import TrainResult
from schemas.events import Feedback, ModelEvent
from schemas.redis_keys import RedisKeys
from schemas.topics import FEEDBACK
from scoring.registry_uri import mlflow_client

pytestmark = pytest.mark.integration


def registry_settings(base: Settings, cache_dir: Path, **overrides: object) -> Settings:
    """``base`` (isolated topics and Redis keys) with a registered model of its own."""
    sections: dict[str, object] = {
        "kafka": base.kafka.model_dump(),
        "redis": base.redis.model_dump(),
        "mlflow": {
            **base.mlflow.model_dump(),
            "tracking_uri": base.mlflow.uri,
            "registered_model": f"cp-test-{uuid.uuid4().hex[:10]}",
            "experiment": "cp-test-registry",
        },
        "model": {**base.model.model_dump(), "promotion_min_gain": 0.01, "promotion_max_slowdown": 1.5},
        "cache_dir": cache_dir,
    }
    sections.update(overrides)
    return load_settings(**sections)


def drop_registered_model(settings: Settings) -> None:
    with contextlib.suppress(Exception):
        mlflow_client(settings).delete_registered_model(settings.mlflow.registered_model)


def register_version(
    settings: Settings, artifact_dir: Path, f1: float, p95: float = 5.0
) -> registry.RegisteredModel:
    """Register ``artifact_dir`` as a new version whose gate metrics are ``f1`` and ``p95``."""
    import mlflow

    result = TrainResult(
        artifact_dir=artifact_dir,
        fp32_onnx=artifact_dir / "model.onnx",
        metrics={"test_weighted_f1": f1, "test_accuracy": f1, "test_macro_f1": f1, "latency_p95_ms": p95},
        report={"evaluation_fingerprint": "same-test-set"},
        images=[],
    )
    mlflow.set_tracking_uri(settings.mlflow.uri)
    mlflow.set_experiment(settings.mlflow.experiment)
    with mlflow.start_run() as run:
        return registry.log_and_register(result, None, settings, run.info.run_id)  # type: ignore[arg-type]


@pytest.fixture
def settings(isolated_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    s = registry_settings(isolated_settings, tmp_path / "cache")
    yield s
    drop_registered_model(s)


@pytest.fixture
def small_artifact(tmp_path: Path) -> Path:
    """A stand-in artifact for tests that never load the model (keeps the shared MLflow small)."""
    directory = tmp_path / "artifact" / "model"
    directory.mkdir(parents=True)
    (directory / "metadata.json").write_text(json.dumps({"model_version": "stand-in"}))
    return directory


@pytest.fixture
def runner(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(cli, "_settings", lambda: settings)
    return CliRunner()


def _set_shadow(settings: Settings, champion: str, challenger: str, records: int, agree: int) -> None:
    name = settings.mlflow.registered_model
    key = RedisKeys(settings.redis.key_prefix).shadow_stats(f"{name}/{champion}", f"{name}/{challenger}")
    client = redis.Redis.from_url(settings.redis.dsn)
    client.hset(key, mapping={"records": records, "agree": agree})
    client.close()


def test_gate_reasons_and_failure_exit_code(
    settings: Settings, small_artifact: Path, runner: CliRunner
) -> None:
    v1 = register_version(settings, small_artifact, f1=0.70)
    assert "champion" in v1.aliases  # the first version becomes champion
    v2 = register_version(settings, small_artifact, f1=0.705)  # gain below the 0.01 margin
    assert "challenger" in v2.aliases

    out = runner.invoke(cli.app, ["model", "promote", v2.version])
    assert out.exit_code == 1, out.output
    assert "not promoted" in out.output and "gain +0.0050 < required 0.0100" in out.output
    # the table lists passed and skipped checks too, not only the failure
    for check in ("weighted F1", "latency", "shadow agreement", "feedback accuracy", "test set"):
        assert check in out.output
    assert registry.champion_version(settings) == v1.version

    v3 = register_version(settings, small_artifact, f1=0.80, p95=10.0)  # 2x slower than allowed 1.5x
    refused = registry.promote(v3.version, settings)
    assert not refused.allowed and "latency" in refused.reason
    assert {c.name: c.status for c in refused.checks}["weighted F1"] == "pass"

    # live shadow agreement: enough verdicts and too little agreement blocks a better model
    v4 = register_version(settings, small_artifact, f1=0.80, p95=6.0)
    _set_shadow(
        settings, v1.version, v4.version, records=settings.learning.promotion_min_shadow_records, agree=10
    )
    refused = registry.promote(v4.version, settings)
    assert not refused.allowed and refused.published is None
    assert refused.reason == "agrees with the champion on 5.0% of 200 live posts < required 60.0%"
    _set_shadow(settings, v1.version, v4.version, records=400, agree=380)
    out = runner.invoke(cli.app, ["model", "promote", v4.version])
    assert out.exit_code == 0, out.output
    assert "95.0% of 400 live posts" in out.output
    assert registry.champion_version(settings) == v4.version

    out = runner.invoke(cli.app, ["model", "promote", "999"])
    assert out.exit_code == 2 and "no version 999" in out.output
    assert [v.version for v in registry.list_versions(settings)] == [
        v4.version,
        v3.version,
        v2.version,
        v1.version,
    ]


def test_rollback_walks_the_champion_history_and_publishes_events(
    settings: Settings, small_artifact: Path, runner: CliRunner
) -> None:
    v1 = register_version(settings, small_artifact, f1=0.70)
    out = runner.invoke(cli.app, ["model", "rollback"])
    assert out.exit_code == 1 and "nothing to roll back to" in out.output

    v2 = register_version(settings, small_artifact, f1=0.75)
    assert registry.promote(v2.version, settings).allowed
    v3 = register_version(settings, small_artifact, f1=0.80)
    assert registry.promote(v3.version, settings).published is True
    assert registry.champion_history(settings) == [v1.version, v2.version, v3.version]

    out = runner.invoke(cli.app, ["model", "rollback", "--reason", "bad live metrics"])
    assert out.exit_code == 0, out.output
    assert f"from version {v3.version} to {v2.version}" in out.output
    result = registry.rollback(settings, actor="test")
    assert (result.version, result.previous_version, result.published) == (v1.version, v2.version, True)
    assert registry.champion_version(settings) == v1.version
    with pytest.raises(registry.RegistryError, match="nothing to roll back to"):
        registry.rollback(settings)

    events = registry.recent_model_events(settings, limit=50)
    moves = [(e.action, e.alias, e.version, e.previous_version) for e in reversed(events)]
    assert moves == [
        ("registered", "champion", v1.version, None),
        ("registered", "challenger", v2.version, None),
        ("promoted", "champion", v2.version, v1.version),
        ("alias_removed", "challenger", v2.version, None),
        ("registered", "challenger", v3.version, None),
        ("promoted", "champion", v3.version, v2.version),
        ("alias_removed", "challenger", v3.version, None),
        ("rolled_back", "champion", v2.version, v3.version),
        ("rolled_back", "champion", v1.version, v2.version),
    ]
    assert events[1].reasons == ["bad live metrics"] and events[0].actor == "test"
    assert any("weighted F1" in reason for reason in events[3].reasons)  # the promotion's gate reasons
    assert all(e.model == settings.mlflow.registered_model for e in events)
    out = runner.invoke(cli.app, ["model", "events", "--limit", "2"], env={"COLUMNS": "250"})
    assert out.exit_code == 0 and out.output.count("rolled_back") == 2, out.output


def test_auto_promotion_is_off_by_default(
    isolated_settings: Settings, settings: Settings, small_artifact: Path
) -> None:
    assert settings.learning.auto_promote is False
    v1 = register_version(settings, small_artifact, f1=0.70)
    v2 = register_version(settings, small_artifact, f1=0.80)
    decision = registry.maybe_auto_promote(settings, v2.version)
    assert not decision.allowed and "learning.auto_promote is off" in decision.reason
    assert {c.name: c.status for c in decision.checks}["weighted F1"] == "pass"  # the gate itself passed
    assert registry.champion_version(settings) == v1.version

    on = registry_settings(
        isolated_settings,
        settings.cache_dir,
        mlflow={**settings.mlflow.model_dump(), "tracking_uri": settings.mlflow.uri},
        learning={"auto_promote": True},
    )
    assert registry.maybe_auto_promote(on, v2.version).allowed
    assert registry.champion_version(settings) == v2.version
    newest = registry.recent_model_events(settings, limit=2)
    assert [(e.action, e.actor) for e in newest] == [
        ("alias_removed", "auto-promote"),
        ("promoted", "auto-promote"),
    ]


def test_a_failed_publish_does_not_undo_the_move(settings: Settings, small_artifact: Path) -> None:
    from tests.ports import free_port

    register_version(settings, small_artifact, f1=0.70)
    v2 = register_version(settings, small_artifact, f1=0.80)
    kafka_away = load_settings(
        **{**settings.model_dump(), "kafka": {"bootstrap_servers": f"127.0.0.1:{free_port()}"}}
    )
    forced = registry.promote(v2.version, kafka_away, force=True)
    assert forced.allowed and forced.published is False
    checks = {c.name: c.status for c in forced.checks}
    assert checks["feedback accuracy"] == "fail" and checks["force"] == "pass", (
        "unreadable evidence fails closed"
    )
    assert registry.champion_version(settings) == v2.version


def test_feedback_accuracy_is_weighed_with_both_models(
    isolated_settings: Settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    settings = registry_settings(
        isolated_settings, tmp_path / "cache", learning={"promotion_min_feedback_labels": 3}
    )
    try:
        v1 = register_version(settings, tiny_model_dir, f1=0.70)
        v2 = register_version(settings, tiny_model_dir, f1=0.80)
        before = registry.evaluate(v2.version, settings)
        assert (
            "0 feedback labels < 3 needed" in {c.name: c.detail for c in before.checks}["feedback accuracy"]
        )

        texts = {"bitcoin to the moon, huge gains": "positive", "eth crashes, total disaster": "negative"}
        texts["the fed meets on tuesday"] = "neutral"
        with EventProducer(settings, component="test") as producer:
            for i, (text, label) in enumerate(texts.items()):
                record = Feedback(
                    source_id=f"t3_fb{i}",
                    event_time=datetime.now(UTC),
                    label=label,
                    text=text,
                    annotator="test",
                )
                producer.send(FEEDBACK.name(settings), record)
        after = registry.evaluate(v2.version, settings)
        check = {c.name: c for c in after.checks}["feedback accuracy"]
        # both versions hold the same artifact: equal accuracy, within the margin
        assert check.status == "pass" and "on 3 feedback labels" in check.detail, check
        assert after.allowed and registry.champion_version(settings) == v1.version  # evaluate moves nothing
    finally:
        drop_registered_model(settings)


def test_gate_rule_without_server(tmp_path: Path) -> None:
    settings = load_settings(
        model={"promotion_min_gain": 0.01, "promotion_max_slowdown": 1.5},
        learning={"promotion_min_shadow_records": 100, "promotion_min_feedback_labels": 20},
        cache_dir=tmp_path,
    )
    champ = registry.RegisteredModel(
        "m", "1", "r", ("champion",), {"eval_weighted_f1": 0.8, "eval_latency_p95_ms": 4}
    )
    better = registry.RegisteredModel("m", "2", "r", (), {"eval_weighted_f1": 0.82, "eval_latency_p95_ms": 5})
    worse = registry.RegisteredModel("m", "3", "r", (), {"eval_weighted_f1": 0.805, "eval_latency_p95_ms": 4})
    assert registry.promotion_gate(better, champ, settings).allowed
    assert not registry.promotion_gate(worse, champ, settings).allowed
    assert registry.promotion_gate(better, None, settings).allowed
    assert not registry.promotion_gate(better, champ, settings, "aaa", "bbb").allowed
    assert not registry.promotion_gate(champ, champ, settings).allowed

    def gate(**evidence: object) -> dict[str, registry.GateCheck]:
        decision = registry.promotion_gate(better, champ, settings, **evidence)  # type: ignore[arg-type]
        return {c.name: c for c in decision.checks}

    few = gate(shadow=registry.ShadowEvidence(records=99, agree=0))["shadow agreement"]
    assert few.status == "skip" and "99 shadow verdicts < 100" in few.detail
    assert gate(shadow=registry.ShadowEvidence(100, 59))["shadow agreement"].status == "fail"
    assert gate(shadow=registry.ShadowEvidence(100, 60))["shadow agreement"].status == "pass"
    assert gate(shadow=registry.ShadowEvidence(0, 0, error="Redis away"))["shadow agreement"].status == "fail"

    worse_on_feedback = registry.FeedbackEvidence(50, champion_accuracy=0.80, challenger_accuracy=0.77)
    assert gate(feedback=worse_on_feedback)["feedback accuracy"].status == "fail"
    slightly = registry.FeedbackEvidence(50, champion_accuracy=0.80, challenger_accuracy=0.79)
    assert gate(feedback=slightly)["feedback accuracy"].status == "pass"
    assert gate(feedback=registry.FeedbackEvidence(19))["feedback accuracy"].status == "skip"
    assert gate()["feedback accuracy"].detail == "no feedback dataset yet"

    decision = registry.promotion_gate(better, champ, settings, feedback=worse_on_feedback)
    assert not decision.allowed and decision.reason.startswith("accuracy 77.0% vs champion 80.0%")
    assert any(line.startswith("pass: weighted F1") for line in decision.reasons)
    event = registry.model_event("m", "promoted", "2", reasons=decision.reasons)  # fits the wire record
    assert ModelEvent.from_json(event.to_json()).reasons == decision.reasons
