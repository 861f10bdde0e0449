"""MLflow tracking and the model registry: log runs, register versions, gate promotions.

Aliases carry the deployment state: ``champion`` is what serving loads
(``models:/NAME@champion``), ``challenger`` the newest candidate. The first version ever
registered becomes champion; later ones become challenger and replace the champion only
through ``promote``, which requires a weighted-F1 gain of at least
``model.promotion_min_gain`` on the same evaluation set and a p95 latency at most
``model.promotion_max_slowdown`` times the champion's.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_export.train import TrainConfig, TrainResult, train
from scoring.registry_uri import mlflow_client

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from core.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
# Model-version tags the promotion gate reads (copied from the run's test metrics).
GATE_METRIC = "eval_weighted_f1"
GATE_LATENCY = "eval_latency_p95_ms"
GATE_FINGERPRINT = "eval_fingerprint"


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (unknown version, no champion, unreachable server)."""


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]
    metrics: dict[str, float]


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of the promotion gate, with the numbers behind it."""

    allowed: bool
    reason: str
    challenger: str
    champion: str | None
    gain: float | None = None
    slowdown: float | None = None


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


def _alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def log_and_register(
    result: TrainResult, config: TrainConfig, settings: Settings, run_id: str
) -> RegisteredModel:
    """Log metrics, images and the artifact to the active run; register a new version and alias it."""
    import mlflow
    from mlflow.exceptions import MlflowException

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
    alias = CHALLENGER if _alias_version(client, name, CHAMPION) is not None else CHAMPION
    client.set_registered_model_alias(name, alias, mv.version)
    log.info("registered %s version %s as %s", name, mv.version, alias)
    return _version_info(client, client.get_model_version(name, mv.version))


def train_and_register(
    settings: Settings, progress: bool = True, out_dir: Path | None = None, **overrides: Any
) -> tuple[RegisteredModel, TrainResult]:
    """One tracked training run: train, log everything to MLflow, register a version."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow.uri)
    mlflow.set_registry_uri(settings.mlflow.uri)
    mlflow.set_experiment(settings.mlflow.experiment)
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        work = out_dir or settings.cache_dir / "training" / run_id
        config = TrainConfig.from_settings(
            settings, work, model_version=f"{settings.mlflow.registered_model}/run-{run_id[:8]}", **overrides
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
    except MlflowException:
        return []
    versions = client.search_model_versions(f"name='{name}'")
    infos = [_version_info(client, client.get_model_version(name, mv.version)) for mv in versions]
    return sorted(infos, key=lambda v: -int(v.version))


def promotion_gate(
    challenger: RegisteredModel,
    champion: RegisteredModel | None,
    settings: Settings,
    challenger_fp: str | None = None,
    champion_fp: str | None = None,
) -> PromotionDecision:
    """The rule itself, free of I/O so it is easy to test and to explain."""
    if champion is None:
        return PromotionDecision(True, "no champion yet", challenger.version, None)
    if champion.version == challenger.version:
        return PromotionDecision(
            False,
            f"version {challenger.version} already is the champion",
            challenger.version,
            champion.version,
        )
    if challenger_fp and champion_fp and challenger_fp != champion_fp:
        return PromotionDecision(
            False,
            "the two versions were evaluated on different test sets; retrain both",
            challenger.version,
            champion.version,
        )
    try:
        f1_new, f1_old = challenger.metrics[GATE_METRIC], champion.metrics[GATE_METRIC]
    except KeyError:
        return PromotionDecision(False, f"missing {GATE_METRIC} tag", challenger.version, champion.version)
    gain = f1_new - f1_old
    slowdown = None
    lat_new, lat_old = challenger.metrics.get(GATE_LATENCY), champion.metrics.get(GATE_LATENCY)
    if lat_new is not None and lat_old is not None and lat_old > 0:
        slowdown = lat_new / lat_old
    min_gain, max_slow = settings.model.promotion_min_gain, settings.model.promotion_max_slowdown
    if gain < min_gain:
        return PromotionDecision(
            False,
            f"weighted F1 {f1_new:.4f} vs champion {f1_old:.4f}: gain {gain:+.4f} < required {min_gain:.4f}",
            challenger.version,
            champion.version,
            gain,
            slowdown,
        )
    if slowdown is not None and slowdown > max_slow:
        return PromotionDecision(
            False,
            f"p95 latency {lat_new:.2f} ms vs {lat_old:.2f} ms: {slowdown:.2f}x > allowed {max_slow:.2f}x",
            challenger.version,
            champion.version,
            gain,
            slowdown,
        )
    return PromotionDecision(
        True,
        f"gain {gain:+.4f} >= {min_gain:.4f}"
        + (f", slowdown {slowdown:.2f}x <= {max_slow:.2f}x" if slowdown is not None else ""),
        challenger.version,
        champion.version,
        gain,
        slowdown,
    )


def promote(version: str, settings: Settings, force: bool = False) -> PromotionDecision:
    """Make ``version`` champion if it passes the gate (or ``force``); the old champion is kept, unaliased."""
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    name = settings.mlflow.registered_model
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc
    challenger = _version_info(client, mv)
    champ_mv = _alias_version(client, name, CHAMPION)
    champion = _version_info(client, champ_mv) if champ_mv is not None else None
    decision = promotion_gate(
        challenger,
        champion,
        settings,
        (mv.tags or {}).get(GATE_FINGERPRINT),
        (champ_mv.tags or {}).get(GATE_FINGERPRINT) if champ_mv else None,
    )
    if not decision.allowed and force and (champion is None or champion.version != challenger.version):
        decision = PromotionDecision(
            True,
            f"forced: {decision.reason}",
            decision.challenger,
            decision.champion,
            decision.gain,
            decision.slowdown,
        )
    if decision.allowed:
        client.set_registered_model_alias(name, CHAMPION, challenger.version)
        challenger_mv = _alias_version(client, name, CHALLENGER)
        if challenger_mv is not None and str(challenger_mv.version) == challenger.version:
            client.delete_registered_model_alias(name, CHALLENGER)
        log.info("promoted %s version %s to champion (%s)", name, version, decision.reason)
    else:
        log.info("refused to promote %s version %s: %s", name, version, decision.reason)
    return decision


def champion_version(settings: Settings) -> str | None:
    mv = _alias_version(mlflow_client(settings), settings.mlflow.registered_model, CHAMPION)
    return None if mv is None else str(mv.version)


def ensure_default_model(settings: Settings, progress: bool = True) -> str:
    """Return the champion version, training and registering the default model first if there is none.

    ``cryptopulse up`` calls this so a fresh machine serves a real model without manual steps.
    """
    existing = champion_version(settings)
    if existing is not None:
        log.info("model %s has champion version %s", settings.mlflow.registered_model, existing)
        return existing
    log.info("no champion for %s: training the default model", settings.mlflow.registered_model)
    registered, _ = train_and_register(settings, progress=progress)
    if CHAMPION not in registered.aliases:
        promote(registered.version, settings, force=True)
    return registered.version


def export_summary(result: TrainResult, path: Path) -> Path:
    """Metrics as JSON (for the model card); kept separate so docs never need MLflow."""
    path.write_text(json.dumps({"metrics": result.metrics, "report": result.report}, indent=1, default=str))
    return path


def _tmp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cryptopulse-train-"))
