"""MLflow tracking and the model registry: log runs, register versions, gate promotions, roll back.

Aliases carry the deployment state: ``champion`` is what serving loads
(``models:/NAME@champion``; the API, the stream worker and the backfill all follow it
without a restart), ``challenger`` the newest candidate. The first version ever
registered becomes champion; later ones become challenger and replace the champion only
through :func:`promote`, whose gate (:func:`promotion_gate`) weighs three kinds of
evidence and explains every check, passed or failed:

* offline metrics on the same evaluation set: a weighted-F1 gain of at least
  ``model.promotion_min_gain`` and a p95 latency at most ``model.promotion_max_slowdown``
  times the champion's;
* live shadow agreement (the stream worker scores posts with both versions and counts in
  Redis ``shadow_stats``): weighed once ``learning.promotion_min_shadow_records`` verdicts
  exist, blocks below ``learning.promotion_min_agreement``;
* accuracy on human feedback labels: weighed once ``learning.promotion_min_feedback_labels``
  labels exist, blocks when the challenger is worse than the champion by more than
  :data:`FEEDBACK_ACCURACY_MARGIN`.

Every alias move (register, promote, rollback) is published as a
:class:`schemas.events.ModelEvent` on the ``model.events`` topic. The registry is the
source of truth: a failed publish never undoes a move, it is logged as an error.
"""

from __future__ import annotations

import importlib
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from core.redact import mask_url_credentials
from schemas.events import ModelEvent
from schemas.redis_keys import RedisKeys
from schemas.topics import MODEL_EVENTS
from scoring.registry_uri import RegistryVersion, mlflow_client

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from core.settings import Settings
    from model_export.train import TrainConfig, TrainResult

log = structlog.get_logger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
# Model-version tags the promotion gate reads (copied from the run's test metrics).
GATE_METRIC = "eval_weighted_f1"
GATE_LATENCY = "eval_latency_p95_ms"
GATE_FINGERPRINT = "eval_fingerprint"
HISTORY_TAG = "champion_history"
"""Registered-model tag: JSON list of the versions that were champion, oldest first."""
HISTORY_MAX = 50
FEEDBACK_ACCURACY_MARGIN = 0.02
"""How much lower the challenger's accuracy on feedback labels may be than the champion's.

A few dozen labels measure accuracy to a few points, so a strict "never lower" rule would
block on noise; a larger drop is a real regression on what people say is right."""
EVENT_TIMEOUT_S = 10.0

GateStatus = Literal["pass", "fail", "skip"]


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (unknown version, no champion, unreachable server)."""


class EventsUnavailable(RuntimeError):
    """The model-events topic cannot be read (Kafka did not answer)."""


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]
    metrics: dict[str, float]


@dataclass(frozen=True)
class GateCheck:
    """One check of the gate: ``skip`` means the evidence was not there yet (not weighed)."""

    name: str
    status: GateStatus
    detail: str

    def line(self) -> str:
        return f"{self.status}: {self.name}: {self.detail}"


@dataclass(frozen=True)
class ShadowEvidence:
    """Champion/challenger agreement on live posts (``shadow_stats``); ``error``: unreadable."""

    records: int
    agree: int
    error: str | None = None


@dataclass(frozen=True)
class FeedbackEvidence:
    """Accuracy of both versions on the feedback labels; ``error``: could not be measured."""

    count: int
    champion_accuracy: float | None = None
    challenger_accuracy: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of the promotion gate: the verdict, a one-line ``reason`` and every check.

    ``published`` is None when nothing moved, else whether the model event reached Kafka.
    """

    allowed: bool
    reason: str
    challenger: str
    champion: str | None
    gain: float | None = None
    slowdown: float | None = None
    checks: tuple[GateCheck, ...] = ()
    published: bool | None = None

    @property
    def reasons(self) -> list[str]:
        """Every check as one human-readable line (what the model event carries)."""
        return [check.line() for check in self.checks] or [self.reason]


@dataclass(frozen=True)
class RollbackResult:
    model: str
    version: str
    previous_version: str
    published: bool


def _version_info(client: MlflowClient, mv: ModelVersion) -> RegisteredModel:
    tags = dict(mv.tags or {})
    metrics = {}
    for key in (GATE_METRIC, GATE_LATENCY, "eval_accuracy", "eval_macro_f1"):
        if key in tags:
            try:
                metrics[key] = float(tags[key])
            except ValueError:
                continue
    return RegisteredModel(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id or "",
        aliases=tuple(mv.aliases or ()),
        metrics=metrics,
    )


def _not_found(exc: Exception) -> bool:
    """The registry answered "no such model/alias" (not: the registry did not answer).

    A connection failure is an MlflowException too (``INTERNAL_ERROR``); taking it for "no
    champion" would make ``ensure_default_model`` train a new one while MLflow restarts.
    """
    return getattr(exc, "error_code", None) in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


def _alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise


# -- model events -------------------------------------------------------------------------


def model_event(
    name: str,
    action: Literal["registered", "promoted", "rolled_back", "alias_removed"],
    version: str,
    *,
    alias: str | None = CHAMPION,
    previous_version: str | None = None,
    reasons: Sequence[str] = (),
    actor: str = "cli",
) -> ModelEvent:
    """A :class:`ModelEvent` for one alias move, stamped now."""
    now = datetime.now(UTC)
    return ModelEvent(
        source_id=f"{name}:{action}:{version}:{now:%Y%m%dT%H%M%S.%fZ}",
        event_time=now,
        model=name,
        action=action,
        alias=alias,
        version=version,
        previous_version=previous_version,
        reasons=[reason[:500] for reason in reasons][:50],
        actor=actor,
    )


def publish_model_events(settings: Settings, events: Sequence[ModelEvent]) -> bool:
    """Publish alias moves on the model-events topic (key: the model name); False when it failed.

    Called after the registry moved: the move stands whatever happens here, so a failure
    is logged as an error (the event is lost to subscribers, not the registry change).
    """
    from core.kafka import EventProducer

    topic = MODEL_EVENTS.name(settings)
    try:
        producer = EventProducer(
            settings, component="model-registry", **{"message.timeout.ms": int(EVENT_TIMEOUT_S * 1000)}
        )
        for event in events:
            producer.send(topic, event, key=event.model)
        producer.flush(timeout_s=EVENT_TIMEOUT_S + 5)
    except Exception as exc:  # DeliveryError, KafkaException: never undo the registry move
        log.error(
            "model event NOT published; the registry move stands",
            topic=topic,
            kafka=settings.kafka.bootstrap,
            events=[e.source_id for e in events],
            error=str(exc),
        )
        return False
    for event in events:
        log.info("model event published", topic=topic, action=event.action, version=event.version)
    return True


def recent_model_events(settings: Settings, limit: int = 20, timeout_s: float = 5.0) -> list[ModelEvent]:
    """The newest ``limit`` model events, newest first ([] before the first one).

    Raises :class:`EventsUnavailable` when Kafka does not answer. A record that fails the
    schema is skipped with a warning naming its offset.
    """
    from confluent_kafka import KafkaException

    from core.kafka import admin_client, tail_offsets, viewer_consumer

    name = MODEL_EVENTS.name(settings)
    try:
        metadata = admin_client(settings, timeout_s=timeout_s, quiet=True).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise EventsUnavailable(f"Kafka at {settings.kafka.bootstrap} did not answer: {exc}") from exc
    if name not in metadata.topics or limit <= 0:
        return []
    found: list[tuple[int, int, ModelEvent]] = []
    consumer = viewer_consumer(settings, "model-events", timeout_s=timeout_s)
    try:
        tails = tail_offsets(consumer, name, metadata.topics[name].partitions, limit, timeout_s=timeout_s)
        assignments = [tp for tp, high in tails if high > tp.offset]
        remaining = sum(max(0, high - tp.offset) for tp, high in tails)
        if assignments:
            consumer.assign(assignments)
        deadline = time.monotonic() + timeout_s
        while assignments and remaining > 0 and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=min(500, remaining), timeout=0.5):
                if msg.error():
                    continue
                remaining -= 1
                try:
                    event = MODEL_EVENTS.decode(msg.value() or b"")
                except ValueError as exc:
                    log.warning(
                        "undecodable model event skipped", topic=name, offset=msg.offset(), error=str(exc)
                    )
                    continue
                if isinstance(event, ModelEvent):
                    found.append((msg.partition() or 0, msg.offset() or 0, event))
    except KafkaException as exc:
        raise EventsUnavailable(f"Kafka at {settings.kafka.bootstrap} did not answer: {exc}") from exc
    finally:
        consumer.close()
    found.sort(key=lambda item: (item[2].event_time, item[1]), reverse=True)
    return [event for _, _, event in found[:limit]]


# -- champion history ---------------------------------------------------------------------
# Why a registered-model tag (one JSON list) and not per-version tags: one read gives the
# whole order; a version can be champion more than once (3 -> 4, rolled back to 3, 4
# promoted again) which one tag per version cannot express; and it needs no search over
# every version with timestamps to rebuild the sequence.


def _champion_history(client: MlflowClient, name: str) -> list[str]:
    raw = (client.get_registered_model(name).tags or {}).get(HISTORY_TAG)
    try:
        parsed = json.loads(raw) if raw else []
    except json.JSONDecodeError:
        log.warning("unreadable champion history tag; starting a new one", model=name, tag=raw)
        return []
    return [str(v) for v in parsed] if isinstance(parsed, list) else []


def _set_champion(client: MlflowClient, name: str, version: str) -> str | None:
    """Point ``champion`` at ``version`` and append it to the history; returns the previous champion."""
    previous_mv = _alias_version(client, name, CHAMPION)
    previous = str(previous_mv.version) if previous_mv is not None else None
    client.set_registered_model_alias(name, CHAMPION, version)
    history = _champion_history(client, name)
    if previous is not None and (not history or history[-1] != previous):
        history.append(previous)  # moved outside this module (e.g. the MLflow UI): keep it rollbackable
    if not history or history[-1] != version:
        history.append(version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_MAX:]))
    return previous


def champion_history(settings: Settings) -> list[str]:
    """The versions that were champion, oldest first (the last one is the champion now)."""
    return _champion_history(mlflow_client(settings), settings.mlflow.registered_model)


def rollback(settings: Settings, *, actor: str = "cli", reason: str | None = None) -> RollbackResult:
    """Move ``champion`` back to the previous champion version, ungated (it served before).

    Walks the champion history back past the current champion, skipping deleted versions;
    the history is cut to end at the restored version, so a second rollback goes one
    further back. Raises :class:`RegistryError` when there is nothing to roll back to.
    """
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    name = settings.mlflow.registered_model
    current_mv = _alias_version(client, name, CHAMPION)
    if current_mv is None:
        raise RegistryError(f"{name} has no champion: nothing to roll back")
    current = str(current_mv.version)
    history = _champion_history(client, name)
    while history and history[-1] == current:
        history.pop()
    target: str | None = None
    while history:
        candidate = history[-1]
        try:
            client.get_model_version(name, candidate)
        except MlflowException as exc:
            if not _not_found(exc):
                raise
            history.pop()  # deleted since: go further back
            continue
        if candidate != current:
            target = candidate
            break
        history.pop()
    if target is None:
        raise RegistryError(
            f"nothing to roll back to: version {current} of {name} is the first recorded champion "
            f"(choose one with `cryptopulse model promote VERSION --force`)"
        )
    client.set_registered_model_alias(name, CHAMPION, target)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    log.warning("champion rolled back", model=name, version=target, previous=current, actor=actor)
    reasons = [reason or f"rolled back from version {current} by {actor}"]
    event = model_event(name, "rolled_back", target, previous_version=current, reasons=reasons, actor=actor)
    return RollbackResult(name, target, current, publish_model_events(settings, [event]))


# -- register -----------------------------------------------------------------------------


def log_and_register(
    result: TrainResult, config: TrainConfig, settings: Settings, run_id: str
) -> RegisteredModel:
    """Log metrics, images and the artifact to the active run; register a new version and alias it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    artifact = Path(result.artifact_dir)
    if not artifact.is_dir() or not any(artifact.iterdir()):
        # MLflow would upload nothing and still register a version nobody can ever load.
        raise RegistryError(f"nothing to register: {artifact} is missing or empty")
    mlflow.log_metrics({k: float(v) for k, v in result.metrics.items()})
    for image in result.images:
        mlflow.log_artifact(str(image), artifact_path="evaluation")
    evaluation = result.artifact_dir.parent / "evaluation.json"
    if evaluation.exists():
        mlflow.log_artifact(str(evaluation), artifact_path="evaluation")
    mlflow.log_artifacts(str(result.artifact_dir), artifact_path="model")
    client = mlflow_client(settings)
    name = settings.mlflow.registered_model
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="CryptoPulse sentiment ensemble (ONNX + linear + lexicon)"
        )
    run = client.get_run(run_id)
    tags = {
        GATE_METRIC: f"{result.metrics['test_weighted_f1']:.6f}",
        "eval_accuracy": f"{result.metrics['test_accuracy']:.6f}",
        "eval_macro_f1": f"{result.metrics['test_macro_f1']:.6f}",
        GATE_FINGERPRINT: str(result.report.get("evaluation_fingerprint", "")),
    }
    if "latency_p95_ms" in result.metrics:
        tags[GATE_LATENCY] = f"{result.metrics['latency_p95_ms']:.4f}"
    mv = client.create_model_version(
        name=name,
        source=f"{run.info.artifact_uri}/model",
        run_id=run_id,
        tags=tags,
        description=f"trained by run {run_id}",
    )
    version = str(mv.version)
    if _alias_version(client, name, CHAMPION) is None:
        alias, previous = CHAMPION, _set_champion(client, name, version)
    else:
        old = _alias_version(client, name, CHALLENGER)
        alias, previous = CHALLENGER, str(old.version) if old is not None else None
        client.set_registered_model_alias(name, CHALLENGER, version)
    log.info("registered model version", model=name, version=version, alias=alias)
    from model_export.reference import attach_at_registration

    attach_at_registration(settings, version, result.artifact_dir)  # the drift reference; never fails
    publish_model_events(
        settings,
        [
            model_event(
                name,
                "registered",
                version,
                alias=alias,
                previous_version=previous,
                reasons=[f"trained by run {run_id}", f"weighted F1 {tags[GATE_METRIC]}"],
                actor="training",
            )
        ],
    )
    return _version_info(client, client.get_model_version(name, version))


def train_and_register(
    settings: Settings,
    progress: bool = True,
    out_dir: Path | None = None,
    with_feedback: bool = True,
    **overrides: Any,
) -> tuple[RegisteredModel, TrainResult]:
    """One tracked training run: train, log everything to MLflow, register a version.

    People's feedback labels join the train split (``with_feedback``); the snapshot is taken
    before the run starts, so a broker failure fails the command instead of leaving an empty
    run, and its content hash is logged on the run (any model traces to the data it saw).
    """
    import mlflow

    from model_export.train import TrainConfig, train

    feedback = None
    if with_feedback:
        from model_export.feedback import snapshot_feedback

        feedback = snapshot_feedback(settings)
    from scoring.registry_uri import use_mlflow_account

    use_mlflow_account(settings)  # the production registry answers 401 without one
    mlflow.set_tracking_uri(settings.mlflow.uri)
    mlflow.set_registry_uri(settings.mlflow.uri)
    mlflow.set_experiment(settings.mlflow.experiment)
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        work = out_dir or settings.cache_dir / "training" / run_id
        config = TrainConfig.from_settings(
            settings,
            work,
            feedback=feedback,
            model_version=f"{settings.mlflow.registered_model}/run-{run_id[:8]}",
            **overrides,
        )
        mlflow.log_params(config.params())
        mlflow.set_tags({"component": "sentiment-ensemble", "base_model": "all-MiniLM-L6-v2"})
        result = train(config, progress=progress)
        registered = log_and_register(result, config, settings, run_id)
    return registered, result


def list_versions(settings: Settings) -> list[RegisteredModel]:
    """Every registered version, newest first, with aliases and gate metrics."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    name = settings.mlflow.registered_model
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if _not_found(exc):
            return []
        raise
    versions = client.search_model_versions(f"name='{name}'")
    infos = [_version_info(client, client.get_model_version(name, mv.version)) for mv in versions]
    return sorted(infos, key=lambda v: -int(v.version))


# -- the gate -----------------------------------------------------------------------------


def promotion_gate(
    challenger: RegisteredModel,
    champion: RegisteredModel | None,
    settings: Settings,
    challenger_fp: str | None = None,
    champion_fp: str | None = None,
    *,
    shadow: ShadowEvidence | None = None,
    feedback: FeedbackEvidence | None = None,
) -> PromotionDecision:
    """The rule itself, free of I/O so it is easy to test and to explain.

    Every check is evaluated (not just up to the first failure) so the reasons say all
    that stands in the way; evidence that is not there yet is ``skip``, never a pass in
    disguise. Allowed when no check failed.
    """
    if champion is None:
        check = GateCheck("champion", "pass", "no champion yet: the first version needs no comparison")
        return PromotionDecision(True, "no champion yet", challenger.version, None, checks=(check,))
    if champion.version == challenger.version:
        detail = f"version {challenger.version} already is the champion"
        return PromotionDecision(
            False,
            detail,
            challenger.version,
            champion.version,
            checks=(GateCheck("champion", "fail", detail),),
        )
    checks = [_test_set_check(challenger_fp, champion_fp)]
    gain, f1_check = _f1_check(challenger, champion, settings)
    slowdown, latency_check = _latency_check(challenger, champion, settings)
    checks += [f1_check, latency_check, _shadow_check(shadow, settings), _feedback_check(feedback, settings)]
    failed = [c for c in checks if c.status == "fail"]
    passed = [c for c in checks if c.status == "pass"]
    reason = "; ".join(c.detail for c in (failed or passed)) or "no check failed"
    return PromotionDecision(
        not failed, reason, challenger.version, champion.version, gain, slowdown, tuple(checks)
    )


def _test_set_check(challenger_fp: str | None, champion_fp: str | None) -> GateCheck:
    if challenger_fp and champion_fp:
        if challenger_fp != champion_fp:
            return GateCheck(
                "test set", "fail", "the two versions were evaluated on different test sets; retrain both"
            )
        return GateCheck("test set", "pass", "both versions were evaluated on the same test set")
    return GateCheck(
        "test set", "skip", "no evaluation fingerprint on one version; metrics compared as they are"
    )


def _f1_check(
    challenger: RegisteredModel, champion: RegisteredModel, settings: Settings
) -> tuple[float | None, GateCheck]:
    try:
        f1_new, f1_old = challenger.metrics[GATE_METRIC], champion.metrics[GATE_METRIC]
    except KeyError:
        return None, GateCheck("weighted F1", "fail", f"missing {GATE_METRIC} tag")
    gain, min_gain = f1_new - f1_old, settings.model.promotion_min_gain
    detail = f"weighted F1 {f1_new:.4f} vs champion {f1_old:.4f}: gain {gain:+.4f}"
    if gain < min_gain:
        return gain, GateCheck("weighted F1", "fail", f"{detail} < required {min_gain:.4f}")
    return gain, GateCheck("weighted F1", "pass", f"{detail} >= {min_gain:.4f}")


def _latency_check(
    challenger: RegisteredModel, champion: RegisteredModel, settings: Settings
) -> tuple[float | None, GateCheck]:
    lat_new, lat_old = challenger.metrics.get(GATE_LATENCY), champion.metrics.get(GATE_LATENCY)
    if lat_new is None or lat_old is None or lat_old <= 0:
        return None, GateCheck("latency", "skip", "p95 latency not measured on both versions")
    slowdown, max_slow = lat_new / lat_old, settings.model.promotion_max_slowdown
    detail = f"p95 latency {lat_new:.2f} ms vs {lat_old:.2f} ms: {slowdown:.2f}x"
    if slowdown > max_slow:
        return slowdown, GateCheck("latency", "fail", f"{detail} > allowed {max_slow:.2f}x")
    return slowdown, GateCheck("latency", "pass", f"{detail} <= {max_slow:.2f}x")


def _shadow_check(shadow: ShadowEvidence | None, settings: Settings) -> GateCheck:
    name = "shadow agreement"
    needed, floor = settings.learning.promotion_min_shadow_records, settings.learning.promotion_min_agreement
    if shadow is None:
        return GateCheck(name, "skip", "no shadow verdicts read")
    if shadow.error is not None:
        return GateCheck(name, "fail", f"cannot read the shadow verdicts: {shadow.error}")
    if shadow.records < max(1, needed):
        return GateCheck(name, "skip", f"{shadow.records} shadow verdicts < {needed} needed: not weighed yet")
    agreement = shadow.agree / shadow.records
    detail = f"agrees with the champion on {agreement:.1%} of {shadow.records} live posts"
    if agreement < floor:
        return GateCheck(name, "fail", f"{detail} < required {floor:.1%}")
    return GateCheck(name, "pass", f"{detail} >= {floor:.1%}")


def _feedback_check(feedback: FeedbackEvidence | None, settings: Settings) -> GateCheck:
    name = "feedback accuracy"
    needed = settings.learning.promotion_min_feedback_labels
    if feedback is None:
        return GateCheck(name, "skip", "no feedback dataset yet")
    if feedback.error is not None:
        return GateCheck(name, "fail", f"cannot measure accuracy on feedback: {feedback.error}")
    if feedback.count < max(1, needed) or feedback.challenger_accuracy is None:
        return GateCheck(name, "skip", f"{feedback.count} feedback labels < {needed} needed: not weighed yet")
    new, old = feedback.challenger_accuracy, feedback.champion_accuracy or 0.0
    detail = f"accuracy {new:.1%} vs champion {old:.1%} on {feedback.count} feedback labels"
    if new < old - FEEDBACK_ACCURACY_MARGIN:
        return GateCheck(name, "fail", f"{detail}: worse by more than {FEEDBACK_ACCURACY_MARGIN:.0%}")
    return GateCheck(name, "pass", f"{detail}: within {FEEDBACK_ACCURACY_MARGIN:.0%} or better")


# -- gathering the evidence ---------------------------------------------------------------


def shadow_evidence(settings: Settings, champion_label: str, challenger_label: str) -> ShadowEvidence:
    """Shadow counters of a champion/challenger pair (labels as runtimes report them: ``NAME/VERSION``)."""
    import redis

    key = RedisKeys(settings.redis.key_prefix).shadow_stats(champion_label, challenger_label)
    client = redis.Redis.from_url(settings.redis.dsn, socket_timeout=5, socket_connect_timeout=3)
    try:
        records, agree = client.hmget(key, ["records", "agree"])
    except redis.RedisError as exc:
        return ShadowEvidence(0, 0, error=f"Redis at {mask_url_credentials(settings.redis.dsn)}: {exc}")
    finally:
        client.close()
    try:
        return ShadowEvidence(int(records or 0), int(agree or 0))
    except ValueError:
        return ShadowEvidence(0, 0, error=f"{key} holds non-integer counters")


def feedback_evidence(settings: Settings, champion_uri: str, challenger_uri: str) -> FeedbackEvidence | None:
    """Accuracy of both versions on the feedback labels; None while there is no feedback module."""
    try:
        feedback = importlib.import_module("model_export.feedback")
    except ModuleNotFoundError as exc:
        if exc.name != "model_export.feedback":
            raise
        return None
    try:
        dataset = feedback.snapshot_feedback(settings)
    except Exception as exc:  # Kafka away, unreadable snapshot: the gate fails closed
        return FeedbackEvidence(0, error=f"cannot read the feedback labels: {exc}")
    count = int(dataset.count)
    if count < max(1, settings.learning.promotion_min_feedback_labels):
        return FeedbackEvidence(count)
    texts = [example.text for example in dataset.examples]
    labels = [str(example.label) for example in dataset.examples]
    try:
        champion = _accuracy(champion_uri, texts, labels, settings)
        challenger = _accuracy(challenger_uri, texts, labels, settings)
    except Exception as exc:  # ModelLoadError, MLflow away
        return FeedbackEvidence(count, error=f"cannot score the feedback labels: {exc}")
    return FeedbackEvidence(count, champion, challenger)


def _accuracy(uri: str, texts: list[str], labels: list[str], settings: Settings) -> float:
    from scoring.holder import load_runtime

    runtime = load_runtime(uri, settings)
    size = settings.model.batch_size
    try:
        predicted = [s.label for i in range(0, len(texts), size) for s in runtime.score(texts[i : i + size])]
    finally:
        close = getattr(runtime, "close", None)
        if close is not None:
            close()
    hits = sum(1 for p, t in zip(predicted, labels, strict=True) if p is not None and str(p) == t)
    return hits / len(labels) if labels else 0.0


def _evaluate(
    client: MlflowClient, name: str, version: str, settings: Settings
) -> tuple[PromotionDecision, RegisteredModel, RegisteredModel | None]:
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        if not _not_found(exc):
            raise
        raise RegistryError(f"{name} has no version {version}") from exc
    challenger = _version_info(client, mv)
    champ_mv = _alias_version(client, name, CHAMPION)
    champion = _version_info(client, champ_mv) if champ_mv is not None else None
    shadow = feedback = None
    if champion is not None and champion.version != challenger.version:
        old, new = RegistryVersion(name, champion.version), RegistryVersion(name, challenger.version)
        shadow = shadow_evidence(settings, old.label, new.label)
        feedback = feedback_evidence(settings, old.uri, new.uri)
    decision = promotion_gate(
        challenger,
        champion,
        settings,
        (mv.tags or {}).get(GATE_FINGERPRINT),
        (champ_mv.tags or {}).get(GATE_FINGERPRINT) if champ_mv else None,
        shadow=shadow,
        feedback=feedback,
    )
    return decision, challenger, champion


def evaluate(version: str, settings: Settings) -> PromotionDecision:
    """What :func:`promote` would decide for ``version`` now, moving nothing."""
    client = mlflow_client(settings)
    return _evaluate(client, settings.mlflow.registered_model, str(version), settings)[0]


def promote(
    version: str, settings: Settings, force: bool = False, *, actor: str = "cli"
) -> PromotionDecision:
    """Make ``version`` champion if it passes the gate (or ``force``); the old champion is kept, unaliased.

    The move is recorded in the champion history (for :func:`rollback`) and published.
    """
    client = mlflow_client(settings)
    name = settings.mlflow.registered_model
    decision, challenger, champion = _evaluate(client, name, str(version), settings)
    if not decision.allowed and force and (champion is None or champion.version != challenger.version):
        override = GateCheck("force", "pass", "--force: the gate was overridden")
        decision = replace(
            decision, allowed=True, reason=f"forced: {decision.reason}", checks=(*decision.checks, override)
        )
    if not decision.allowed:
        log.info("promotion refused", model=name, version=challenger.version, reasons=decision.reasons)
        return decision
    previous = _set_champion(client, name, challenger.version)
    events = [
        model_event(
            name,
            "promoted",
            challenger.version,
            previous_version=previous,
            reasons=decision.reasons,
            actor=actor,
        )
    ]
    challenger_mv = _alias_version(client, name, CHALLENGER)
    if challenger_mv is not None and str(challenger_mv.version) == challenger.version:
        client.delete_registered_model_alias(name, CHALLENGER)
        events.append(
            model_event(
                name,
                "alias_removed",
                challenger.version,
                alias=CHALLENGER,
                reasons=["promoted to champion"],
                actor=actor,
            )
        )
    log.info("promoted to champion", model=name, version=challenger.version, previous=previous, actor=actor)
    return replace(decision, published=publish_model_events(settings, events))


def maybe_auto_promote(settings: Settings, version: str) -> PromotionDecision:
    """For the retraining service, after it registered ``version`` as challenger.

    Promotes (actor ``auto-promote``) only when ``learning.auto_promote`` is on and the
    gate passes; otherwise returns the gate's verdict with why nothing moved.
    """
    if settings.learning.auto_promote:
        return promote(version, settings, actor="auto-promote")
    decision = evaluate(version, settings)
    off = GateCheck(
        "auto-promote",
        "fail",
        f"learning.auto_promote is off: promote by hand with `cryptopulse model promote {version}`",
    )
    log.info("auto-promotion off", version=version, gate_passed=decision.allowed)
    return replace(decision, allowed=False, reason=off.detail, checks=(*decision.checks, off))


def champion_version(settings: Settings) -> str | None:
    mv = _alias_version(mlflow_client(settings), settings.mlflow.registered_model, CHAMPION)
    return None if mv is None else str(mv.version)


def ensure_default_model(settings: Settings, progress: bool = True) -> str:
    """Return the champion version, registering the default model first if there is none.

    ``cryptopulse up`` calls this so a fresh machine serves a real model without manual steps:
    the bundled model (``models/default``, seconds) when the checkout has an intact one,
    otherwise a training run on the shipped data (about 25 minutes on 2 cores).
    """
    existing = champion_version(settings)
    if existing is not None:
        log.info("model has a champion", model=settings.mlflow.registered_model, version=existing)
        return existing
    from model_export.bundle import bundled_default, register_bundle

    bundle = bundled_default()
    if bundle is not None:
        log.info("no champion: registering the bundled default model", model=settings.mlflow.registered_model)
        registered = register_bundle(settings, bundle)
    else:
        log.info("no champion: training the default model", model=settings.mlflow.registered_model)
        registered, _ = train_and_register(settings, progress=progress)
    if CHAMPION not in registered.aliases:
        promote(registered.version, settings, force=True, actor="ensure-default")
    return registered.version


def export_summary(result: TrainResult, path: Path) -> Path:
    """Metrics as JSON (for the model card); kept separate so docs never need MLflow."""
    path.write_text(json.dumps({"metrics": result.metrics, "report": result.report}, indent=1, default=str))
    return path


def _tmp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cryptopulse-train-"))
